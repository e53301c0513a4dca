"""One-line errors instead of tracebacks: every command runs inside ``handle_errors``."""
from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator

import click

from ..runtime.oom import is_out_of_memory
from . import exit_codes


class CliError(click.ClickException):
    """A failure that ends the command with a message and a chosen exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        click.echo(f"depthcli: error: {self.format_message()}", err=True)


INTERRUPTED = "interrupted; outputs written so far are complete"


def interrupted_error(detail: str = INTERRUPTED) -> CliError:
    """Ctrl-C or SIGTERM (``cli.signals``): one line, exit 130, whatever the moment."""
    return CliError(detail, exit_codes.INTERRUPTED)


def debug_enabled() -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    return bool(root and root.obj and root.obj.get("debug"))


def print_debug_traceback() -> None:
    """With --debug, the traceback of the exception being handled, which the one-line
    message reporting it (and the command going on) would otherwise hide."""
    if debug_enabled():
        traceback.print_exc()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """Map known failures to exit codes; anything unexpected still gets one line (and the
    traceback only with ``--debug``)."""
    try:
        yield
    except (click.exceptions.Exit, click.ClickException, click.Abort):
        raise
    except KeyboardInterrupt:
        raise interrupted_error() from None
    except BrokenPipeError:
        # the reader of our stdout went away (`depthcli models | head`): not an error worth a line
        _silence_stdout()
        sys.exit(exit_codes.OK)
    except BaseException as exc:  # noqa: BLE001 - the point is to never show a raw traceback
        if isinstance(exc, SystemExit):
            raise
        if debug_enabled():
            traceback.print_exc()
        from ..model.errors import CheckpointError  # light: no model built

        if isinstance(exc, CheckpointError):
            raise CliError(_one_line(exc), exit_codes.MODEL) from None
        if is_out_of_memory(exc):
            raise CliError(f"out of memory: {_one_line(exc)}", exit_codes.DEVICE) from None
        raise CliError(f"{type(exc).__name__}: {_one_line(exc)}", exit_codes.SOME_FAILED) from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass

