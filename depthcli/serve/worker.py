"""The one model and the requests in front of it.

The predictor is not thread-safe and a forward pass blocks for up to seconds, so every
inference runs in ONE worker thread, in arrival order, while the event loop keeps accepting,
uploading, decoding and encoding. ``Admission`` bounds how many requests the server holds at
once (one at the model, ``queue`` more uploading, decoding or waiting): a request that finds no
free place is turned away at once (503), before its body is read, so memory stays bounded by
``(queue + 1) x (upload limit + one decoded image)``. A request whose client went away while it
waited is dropped before the model runs for it.
"""
from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class ClientGone(Exception):
    """The request's client disconnected before the model reached it: nothing was computed."""


@dataclass
class Counters:
    """What /v1/info reports under ``load``; touched from the event loop and the worker (ints:
    each update is one bytecode-level store, good enough for monitoring numbers)."""

    in_flight: int = 0  # requests admitted and not answered yet
    waiting: int = 0  # of those, handed to the worker and not started
    model_runs: int = 0
    served: int = 0  # 200 responses
    rejected_busy: int = 0  # 503: no free place
    client_gone: int = 0  # dropped because the client disconnected before an answer


class Admission:
    """At most ``capacity`` requests held at once; ``try_enter`` never waits."""

    def __init__(self, capacity: int, counters: Counters) -> None:
        self.capacity = capacity
        self.counters = counters

    def try_enter(self) -> bool:
        if self.counters.in_flight >= self.capacity:  # event-loop only: no race between test and set
            self.counters.rejected_busy += 1
            return False
        self.counters.in_flight += 1
        return True

    def leave(self) -> None:
        self.counters.in_flight -= 1


@dataclass
class _Ticket:
    work: Callable[[], Any]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    gone: threading.Event = field(default_factory=threading.Event)


class ModelWorker:
    """Runs submitted calls one at a time in a dedicated thread, in submission order."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self._tickets: queue.SimpleQueue[_Ticket | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="depthcli-model", daemon=True)
        self._thread.start()

    async def run(self, work: Callable[[], Any], *, client_gone: asyncio.Event) -> Any:
        """``work()`` in the model thread; its result or exception comes back here. If
        ``client_gone`` is set before the worker reaches it, ``work`` never runs (ClientGone)."""
        loop = asyncio.get_running_loop()
        ticket = _Ticket(work, loop.create_future(), loop)
        self.counters.waiting += 1
        self._tickets.put(ticket)
        watcher = asyncio.ensure_future(client_gone.wait())
        try:
            await asyncio.wait({ticket.future, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not ticket.future.done():
                ticket.gone.set()  # the worker skips it, or finishes it for nobody
                raise ClientGone
            return ticket.future.result()
        finally:
            watcher.cancel()

    def close(self) -> None:
        """Let the thread finish what it holds and stop (called at server shutdown)."""
        self._tickets.put(None)
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        while True:
            ticket = self._tickets.get()
            if ticket is None:
                return
            self.counters.waiting -= 1
            if ticket.gone.is_set():
                continue  # its client left while it waited: costs nothing
            self.counters.model_runs += 1
            try:
                result, error = ticket.work(), None
            except BaseException as e:  # noqa: BLE001 - handed to the request, which answers it
                result, error = None, e
            try:
                ticket.loop.call_soon_threadsafe(_settle, ticket.future, result, error)
            except RuntimeError:  # the event loop is gone (a forced stop): nobody to answer
                return


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
