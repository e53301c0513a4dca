"""Overlap work on a stream: run ``fn`` on the next items in a worker thread while the caller
works on the current one (the model never waits for disk or decoding)."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch_map(fn: Callable[[T], R], items: Iterable[T], *, ahead: int = 2) -> Iterator[tuple[T, Future[R]]]:
    """Yield (item, future) in order, with up to ``ahead`` items being worked on in the
    background. Exceptions stay in their future, so one bad item does not stop the stream."""
    it = iter(items)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="depthcli-prefetch") as pool:
        window: deque[tuple[T, Future[R]]] = deque()
        try:
            for item in it:
                window.append((item, pool.submit(fn, item)))
                if len(window) > ahead:
                    yield window.popleft()
            while window:
                yield window.popleft()
        finally:
            for _, fut in window:
                fut.cancel()
