"""Live sources: read frames in a background thread so capture overlaps inference.

For a camera or network stream only the newest frame is kept (a preview must show now, not a
queue of the past); for a file every frame is delivered in order.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

import numpy as np


class LatestFrame:
    """Iterate the frames of ``source`` from a reader thread; ``drop_stale`` keeps only the
    newest one waiting."""

    def __init__(self, source: Iterable[tuple[int, np.ndarray]], *, drop_stale: bool) -> None:
        self._source = source
        self._drop = drop_stale
        self._cond = threading.Condition()
        self._pending: list[tuple[int, np.ndarray]] = []
        self._finished = False
        self._stop = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="depthcli-capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._source:
                with self._cond:
                    while not self._drop and self._pending and not self._stop:
                        self._cond.wait(0.1)  # file: wait for the consumer, never drop
                    if self._stop:
                        return
                    if self._drop:
                        self._pending.clear()
                    self._pending.append(item)
                    self._cond.notify_all()
        except BaseException as e:  # noqa: BLE001 - reported by the consumer
            self.error = e
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        while True:
            with self._cond:
                while not self._pending and not self._finished:
                    self._cond.wait(0.1)
                if not self._pending:
                    return
                item = self._pending.pop(0)
                self._cond.notify_all()
            yield item

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=2)
