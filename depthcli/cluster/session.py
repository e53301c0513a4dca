"""Joining a Ray cluster for one run, and what the cluster has (GPUs, CPUs) to size the work.

Ray is an optional extra: ``require_ray`` only looks for the packages (no import), so the CLI
can answer a usage error at once, and ``--help`` never pays for importing Ray.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

INSTALL_HINT = "pip install 'depthcli[ray]'"
_LOOPBACK = ("127.", "localhost", "[::1]", "::1")


class RayUnavailable(Exception):
    """Ray (or pyarrow) is not installed: a usage error, with the install command."""


class ClusterFailure(Exception):
    """The run as a whole cannot go on. ``kind``: ``model`` (the checkpoint cannot be loaded
    on the workers), ``device`` (device/precision unavailable or out of memory there) or
    ``connect`` (no cluster at that address)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def require_ray() -> None:
    missing = [name for name in ("ray", "pyarrow") if not _installed(name)]
    if missing:
        raise RayUnavailable(f"--ray needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                             f"not installed: {INSTALL_HINT}")


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextlib.contextmanager
def connected(address: str) -> Iterator[None]:
    """``ray.init`` for the run, quiet (depthcli prints its own lines), and ``ray.shutdown`` after
    it, so a driver never leaves a local instance behind. ``local`` starts Ray here; anything
    else (``host:port``, ``ray://host:port``, ``auto``) joins an existing cluster."""
    host, _, port = address.split("://")[-1].rpartition(":")
    if "://" not in address and port.isdigit():
        _check_reachable(address, host.strip("[]"), int(port))
    if address != "local" and host.startswith(_LOOPBACK):
        # Ray rewrites a loopback address to this machine's routable IP before connecting, which
        # misses a cluster bound to 127.0.0.1 only; this keeps the address as given (read when
        # ray is first imported; it changes nothing else on Linux)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():  # a Python caller that already joined a cluster keeps its session
        yield
        return
    kwargs: dict = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address == "local":
        kwargs["include_dashboard"] = False
    with _without_core_log_lines():
        try:
            ray.init(address=None if address == "local" else address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as e:
            raise ClusterFailure(f"cannot connect to the Ray cluster at {address}: {_one_line(e)}",
                                 "connect") from None
        try:
            _quiet_ray_data()
            yield
        finally:
            ray.shutdown()


def _check_reachable(address: str, host: str, port: int) -> None:
    """A host:port that nothing answers on fails at once, not after Ray's minute of retries."""
    import socket

    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as e:
        raise ClusterFailure(f"cannot connect to the Ray cluster at {address}: "
                             f"{e.strerror or e} (is `ray start --head` running there?)", "connect") from None


_CORE_LOG_LINE = re.compile(rb"^\[\d{4}-\d\d-\d\d [\d:,]+ [DIWEF] \d+ \d+\] \S+\.(?:cc|h):\d+: ")


@contextlib.contextmanager
def _without_core_log_lines() -> Iterator[None]:
    """Ray's C++ core writes its own log lines to the driver's stderr (e.g. a note each time a
    restartable actor is made); depthcli's stderr is one line per input. stderr is passed on
    through a pipe with those lines dropped (``DEPTHCLI_RAY_LOG=1`` keeps them)."""
    if os.environ.get("DEPTHCLI_RAY_LOG") == "1":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        read_fd, write_fd = os.pipe()
    except (OSError, ValueError):  # no real stderr (embedded): nothing to filter
        yield
        return

    def pump() -> None:
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not _CORE_LOG_LINE.match(line))
                if kept:
                    os.write(saved, kept)
                if pending and not _CORE_LOG_LINE.match(pending) and b"\r" in pending:
                    os.write(saved, pending)  # a progress bar redraw: shown now, not at the newline
                    pending = b""
            if pending and not _CORE_LOG_LINE.match(pending):
                os.write(saved, pending)

    thread = threading.Thread(target=pump, name="depthcli-stderr", daemon=True)
    thread.start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump drains and ends
        thread.join(timeout=5)
        os.close(saved)


def _quiet_ray_data() -> None:
    """No Ray Data progress bars or execution banners: the driver shows depthcli's own lines
    and bar, the same as a local run."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


@dataclass(frozen=True)
class Shape:
    """What the cluster has, read when the run starts."""

    gpus: int
    cpus: int
    nodes: int


def cluster_shape() -> Shape:
    import ray

    resources = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return Shape(gpus=int(resources.get("GPU", 0)), cpus=int(resources.get("CPU", 0)), nodes=nodes)


def wants_gpus(spec, shape: Shape) -> bool:  # noqa: ANN001 - PredictorSpec
    """A GPU per model when the cluster has them, unless the run asked for the CPU (or MPS)."""
    return shape.gpus > 0 and spec.device in ("auto", "cuda")
