"""Running the app: a socket bound before the model loads (a busy port fails in a second, not
after the weights), uvicorn on it, and our own signal handling.

Ctrl-C or SIGTERM stops accepting connections and lets every admitted request finish (uvicorn's
graceful shutdown), then the model thread stops: the server's normal end, exit 0. A second
signal while requests are still running cuts them off: exit 130. uvicorn's own handler would
re-raise the signal after shutting down (the process then dies "by" it), which hides that
difference, so it is replaced here.
"""
from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator

import uvicorn


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve to anything


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one. Raises OSError."""
    family, _, _, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    return f"http://{shown}:{port}/"


class _Server(uvicorn.Server):
    """uvicorn's server with depthcli's signal handling (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[str], None]) -> None:
        super().__init__(config)
        self._on_stop = on_stop
        self.early: list[int] = []  # signals that came after "serving" was said, before this handling began

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum: int, frame: object) -> None:
            if self.should_exit:
                self.force_exit = True
                # the cut-off requests' tasks are cancelled: uvicorn would log a traceback for each
                logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL + 1)
                self._on_stop("second signal: stopping now, requests still running are cut off")
            else:
                self.should_exit = True
                self._on_stop("stopping: no new connections; requests already in finish first "
                              "(Ctrl-C again to cut them off)")

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        for signum in self.early[:1]:  # asked to stop while starting: a graceful stop right away
            handle(signum, None)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run(app, sock: socket.socket, *, on_stop: Callable[[str], None],  # noqa: ANN001
        on_ready: Callable[[], None] = lambda: None) -> bool:
    """Serve until a signal; True when every admitted request was answered (a graceful stop),
    False when a second signal forced the end. ``on_ready`` announces the server: from that call
    on, a signal is the server's (a graceful stop, even before uvicorn's loop runs), never an
    interrupt in the middle of the event loop's start-up."""
    config = uvicorn.Config(app, http="h11", loop="asyncio", lifespan="on", log_level="warning",
                            access_log=False, server_header=False, timeout_graceful_shutdown=None)
    server = _Server(config, on_stop)
    with _kept_for(server):
        on_ready()
        server.run(sockets=[sock])
    return not server.force_exit


@contextlib.contextmanager
def _kept_for(server: _Server) -> Iterator[None]:
    """Signals before the server's own handling begins are kept for it (``_Server.early``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def keep(signum: int, frame: object) -> None:
        server.early.append(signum)

    previous = {sig: signal.signal(sig, keep) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
