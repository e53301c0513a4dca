"""Depth for a stream of frames with decoding, inference and encoding overlapped.

Three stages joined by bounded queues:

    frames (decode + preprocess, worker thread) -> model (caller's thread) -> sink (render +
    encode, worker thread)

The model runs in the caller's thread so Ctrl-C lands there; on interrupt the reader stops, the
frames already inferred are still handed to the sink (so the output holds every finished
frame), and the KeyboardInterrupt is re-raised.

The model stage drives the predictor's clip runner (``runtime/temporal.clip_runner``): a
per-frame model answers each frame (batched, ``--batch``), a clip model (Video Depth Anything)
may hold frames until their depth is final (a window's latency) and hands the rest over at the
end of the stream. Frames reach the sink in order either way.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from .predictor import DepthPredictor, Prediction
from .stats import FrameStats
from .temporal import clip_runner

_DONE = object()
POLL_S = 0.1


@dataclass
class StreamResult:
    frames: int = 0
    wall_s: float = 0.0
    stats: list[FrameStats] = field(default_factory=list)
    source_error: BaseException | None = None  # the frame source failed midway (frames so far kept)

    @property
    def model_fps(self) -> float:
        """Frames per second the model alone would sustain (median forward time)."""
        if not self.stats:
            return 0.0
        ms = sorted(s.infer_ms for s in self.stats)[len(self.stats) // 2]
        return 1000.0 / ms if ms > 0 else float("inf")

    @property
    def end_to_end_fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


class _Stage(threading.Thread):
    """A worker that records its exception instead of dying silently."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            self.error = e


def _put(q: queue.Queue, item: object, keep_trying: Callable[[], bool]) -> bool:
    """Put into a bounded queue without blocking for good: give up once ``keep_trying`` says so
    (the reader was told to stop, or the stage that drains the queue is gone)."""
    while keep_trying():
        try:
            q.put(item, timeout=POLL_S)
            return True
        except queue.Full:
            continue
    return False


def stream_depth(frames: Iterable[tuple[int, np.ndarray]], predictor: DepthPredictor,
                 sink: Callable[[int, np.ndarray, Prediction], None], *,
                 on_frame: Callable[[FrameStats], None] | None = None, queue_size: int = 4,
                 temporal: str | None = None) -> StreamResult:
    """Run every (index, BGR frame) through the model and hand (index, frame, prediction) to
    ``sink`` in order. ``temporal``: a clip model's mode (``window`` or ``stream``; None: its
    default). Returns timing; raises the sink's error, or KeyboardInterrupt."""
    runner = clip_runner(predictor, temporal)
    stop = threading.Event()
    batch = max(1, getattr(predictor, "batch", 1))
    to_model: queue.Queue = queue.Queue(maxsize=max(queue_size, 2 * batch))
    to_sink: queue.Queue = queue.Queue(maxsize=queue_size)
    result = StreamResult()

    def running() -> bool:
        return not stop.is_set()

    def read() -> None:
        try:
            for index, frame in frames:
                if stop.is_set():
                    return
                if not _put(to_model, (index, frame, predictor.prepare(frame, f"frame {index}")), running):
                    return
        finally:
            _put(to_model, _DONE, running)

    def write() -> None:
        last = None  # a frame handed over twice (Ctrl-C during its put) is written once
        while True:
            item = to_sink.get()
            if item is _DONE:
                return
            if last is None or item[0] > last:
                last = item[0]
                sink(*item)

    reader, writer = _Stage(read, "depthcli-read"), _Stage(write, "depthcli-write")
    t0 = time.perf_counter()
    reader.start()
    writer.start()
    pending: list = []  # inferred (and counted by on_frame) but not yet queued for the sink
    try:
        while writer.is_alive():
            try:
                item = to_model.get(timeout=POLL_S)
            except queue.Empty:
                if not reader.is_alive() and to_model.empty():
                    break
                continue
            if item is _DONE:
                break
            items, done = _take_batch(item, to_model, batch)
            pending = runner.run(items)
            _hand_over(pending, to_sink, writer, result, on_frame)
            if done:
                break
        if writer.is_alive():  # the end of the stream: a clip model's last frames
            pending = runner.finish()
            _hand_over(pending, to_sink, writer, result, on_frame)
    except KeyboardInterrupt:
        stop.set()
        for item in pending:  # every frame reported as done ends up in the output
            _put(to_sink, item, writer.is_alive)
        _finish(writer, to_sink)
        raise
    finally:
        stop.set()
    _finish(writer, to_sink)
    reader.join(timeout=5)
    result.wall_s = time.perf_counter() - t0
    if writer.error is not None:
        raise writer.error
    result.frames = len(result.stats)
    result.source_error = reader.error
    return result


def _take_batch(first: tuple, to_model: queue.Queue, batch: int) -> tuple[list[tuple], bool]:
    """``first`` and up to ``batch - 1`` more frames already waiting with the same network size
    (never waiting for more: a batch must not add latency); True when the stream's end was met."""
    items = [first]
    shape = first[2].input_bchw.shape
    while len(items) < batch:
        with to_model.mutex:  # peek: this thread is the only consumer, so the head stays put
            item = to_model.queue[0] if to_model.queue else None
        if item is None or (item is not _DONE and item[2].input_bchw.shape != shape):
            break
        to_model.get_nowait()
        if item is _DONE:
            return items, True
        items.append(item)
    return items, False


def _hand_over(pending: list, to_sink: queue.Queue, writer: _Stage, result: StreamResult,
               on_frame: Callable[[FrameStats], None] | None) -> None:
    """Count and report final frames, then queue them for the sink; ``pending`` empties as they
    go, so an interrupt hands over exactly the ones not queued yet."""
    for _, _, prediction in pending:
        result.stats.append(prediction.stats)
        if on_frame is not None:
            on_frame(prediction.stats)
    while pending:
        _put(to_sink, pending[0], writer.is_alive)
        pending.pop(0)


def _finish(writer: _Stage, to_sink: queue.Queue) -> None:
    """Let the sink write everything already inferred, then stop it."""
    _put(to_sink, _DONE, writer.is_alive)
    while writer.is_alive():
        try:
            writer.join(timeout=POLL_S)
        except KeyboardInterrupt:  # a second Ctrl-C: still let the writer finish its frame
            continue
