"""The ``depthcli`` command group. Subcommands live one per module and import torch lazily,
so ``depthcli --version`` and ``--help`` stay instant."""
from __future__ import annotations

import os
import sys
import threading

from . import signals

if os.path.basename(sys.argv[0]).startswith(("depthcli", "__main__")):  # the program itself, not an importer
    signals.install()  # first thing: a SIGTERM from here on ends the run as documented, never by default

import click  # noqa: E402 - after the signals, on purpose

from .._version import __version__  # noqa: E402

SUBCOMMANDS = {  # name -> module under depthcli.cli, loaded on first use
    "image": "image",
    "video": "video",
    "webcam": "webcam",
    "models": "models",
    "download": "models",
    "convert": "models",
    "info": "info",
    "serve": "serve",
}


class LazyGroup(click.Group):
    def main(self, args=None, *rest, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201 - click's signature
        """The CLI run, with its signals taken for the whole of it (``cli.signals``). ``args`` None:
        the arguments are the process's own, so this is the program, which exits next."""
        signals.install()  # (again: the import took the signals only for the program itself)
        try:
            return super().main(args, *rest, **kwargs)
        finally:
            signals.release(program=args is None)

    def make_context(self, *args, **kwargs) -> click.Context:  # noqa: ANN002, ANN003 - click's signature
        try:
            signals.begin()  # a signal that came while starting ends the run here, as documented
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:
            raise _interrupted() from None

    def invoke(self, ctx: click.Context):  # noqa: ANN201 - whatever the command returns
        """The command, with an interrupt anywhere outside its own handling (parsing its options,
        importing it) ending as the command's own would, not as click's "Aborted!" (exit 1);
        once it has returned or exited, a late signal no longer changes how the run ends."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _interrupted() from None
        finally:
            signals.work_done()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in SUBCOMMANDS if self._load(name) is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._load(name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        import importlib

        module_name = SUBCOMMANDS.get(name)
        if module_name is None:
            return None
        try:
            module = importlib.import_module(f"depthcli.cli.{module_name}")
        except ModuleNotFoundError as e:
            if e.name == f"depthcli.cli.{module_name}":
                return None  # not built yet
            raise
        return getattr(module, f"{name}_command", None)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="depthcli")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Depth maps from images, videos and webcams with Depth-Anything (V1 and V2).

    \b
    Exit codes: 0 ok, 1 some inputs failed (the rest were written), 2 usage error,
    3 model/weights problem, 4 device or memory problem, 5 input could not be opened,
    130 interrupted (outputs written so far are complete).
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if debug:  # OpenCV/FFmpeg warnings too (silenced otherwise); costs the cv2 import, so only here
        from ..io.images import set_opencv_logging

        set_opencv_logging(verbose=True)


def run() -> None:
    """The ``depthcli`` program (its console script and ``python -m depthcli``): the CLI, then
    the process ends at once (``_leave``). ``main()`` itself keeps click's way of ending, a
    ``SystemExit``, for callers that embed it."""
    try:
        main()
    except SystemExit as e:
        if isinstance(e.code, int | None):
            _leave(e.code or 0)
        raise


def _leave(code: int) -> None:
    """End the program now, without the interpreter's teardown. A run ends holding a compiled
    model of a hundred MB or more and OpenVINO's thread pools; freeing them object by object and
    unloading the plugins at shutdown costs ~0.1 s, a tenth of a one-photo call, for memory the
    OS takes back at once. What a normal exit does that matters still happens first: the atexit
    handlers (logging, Ray, temporary folders) and the flush of the standard streams. When
    another Python thread that is not a daemon is still alive, this returns and the normal
    shutdown runs instead (it waits for that thread)."""
    import atexit

    if any(t is not threading.main_thread() and t.is_alive() and not t.daemon for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a reader that went away: nothing left to say to it
            pass
    os._exit(code)


def _interrupted() -> click.ClickException:
    from .errors import interrupted_error

    return interrupted_error()
