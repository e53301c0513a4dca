"""Video Depth Anything on OpenVINO: the ``TemporalBackend`` of ``runtime/temporal.py`` over the
graphs ``openvino_temporal_graph.py`` converts (encoder, window, stream, stream_first), compiled
for the CPU. No torch here: a cached model runs without it.

Each graph is compiled once for any shape (its blob exported to the cache entry, so the next
run imports it in a fraction of a second) and run with its own infer request. The encoder and
the streaming graph, which run once per frame, also get a model compiled for one shape by the
per-image backend's rule: once a shape has come ``STATIC_AFTER`` times (a camera's frames, a
window's new frames), or at once when an earlier run exported its blob. On a 336x252 frame in
bf16 the encoder takes 36 ms against 46 for the dynamic one (on a quiet host; less gain on a
busy one), the streaming graph 30 against 34.
One model of each graph is held at a time, so memory stays that of one: the dynamic one goes
when a static one comes (a camera and a clip's windows keep one shape), and is imported again
if needed.
Outputs are copied out of the requests: the next call would overwrite them, and the clip
runners keep features and states across calls.

Streaming keeps the context in place: one buffer per state kind holds the 31 cached frames in
slots (``schedule.ContextSlots``), handed to the graph without a copy, and each frame writes the
two slots whose frame changed. Concatenating the 31 frames' states every frame (65 MB at 252)
and projecting them again inside the graph took most of a frame's time.
"""
from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import numpy as np

from ...model.configs import PATCH_SIZE
from ...model.errors import CheckpointError
from ...model.video_depth_anything.schedule import ContextSlots
from ..position import PositionCache
from . import precision_name
from .openvino_backend import STATIC_AFTER, _Compiled, blob_name, compile_or_import, fix_shapes, setup_cpu
from .openvino_cache import Entry, read_graph

TAPS = 4  # tapped encoder levels: the decode graphs' first inputs
FINE_CHUNK = 4  # model/video_depth_anything/head.FINE_CHUNK (not imported: it needs torch)


class OpenVinoTemporalBackend:
    name = "openvino"

    def __init__(self, recipe: dict[str, Any], position_table: np.ndarray, *, entry: Entry | None = None,
                 graphs: dict[str, Any] | None = None, precision: str = "fp32", threads: int | None = None) -> None:
        """From a cache ``entry`` (graphs read from it when a compile needs them) or, when the
        model could not be cached, the in-memory ``graphs``."""
        self.recipe = recipe
        self.notes: list[str] = []
        self._entry, self._graphs = entry, graphs
        self._position = PositionCache(position_table)  # the encoding fed to the graph, per grid
        setup_cpu(self, precision, threads)
        self._compiled: dict[str, tuple[Any, Any, Any]] = {}  # graph -> (compiled, request, blob)
        self._lock = threading.Lock()
        self._slots = ContextSlots()  # streaming: which frame each slot of the buffers holds
        self._slot_buffers: list[np.ndarray] = []  # per state kind, (pixels, slots, channels)
        self._seen: Counter[tuple[str, tuple[int, ...]]] = Counter()  # (graph, shape key): calls
        self._static: dict[str, _Compiled] = {}  # graph -> its model compiled for one set of shapes, when held
        self.compiles = 0

    @classmethod
    def from_entry(cls, entry: Entry, **kwargs: Any) -> OpenVinoTemporalBackend:
        return cls(entry.recipe, entry.position_table(), entry=entry, **kwargs)

    # ------------------------------------------------------------------------- compiling
    def _graph(self, name: str) -> Any:
        if self._entry is None:
            return self._graphs[name].clone()
        problem = self._entry.verify_graph(name)
        if problem is None:
            try:
                return read_graph(self._entry.xml(name))
            except Exception as e:  # noqa: BLE001 - any failure to read it back says the same
                problem = type(e).__name__
        raise CheckpointError(f"the converted model in {self._entry.folder} was removed or changed "
                              f"({problem}): run again to rebuild it")

    def _request(self, name: str) -> Any:
        """The infer request of graph ``name``, compiled (or imported) on first use."""
        with self._lock:
            if name not in self._compiled:
                compiled, blob, here = compile_or_import(
                    self._core, self._config, self._entry, blob_name(None, self._ov_precision, self.threads, name),
                    lambda: self._graph(name), self.notes)
                self.compiles += here
                self._compiled[name] = (compiled, compiled.create_infer_request(), blob)
            return self._compiled[name][1]

    def _request_for(self, name: str, inputs: list[np.ndarray], key: tuple[int, ...]) -> Any:
        """The request of graph ``name`` for ``inputs``: its model compiled for their shapes when
        the rule in the module docstring says so, else the dynamic one. ``key`` (the frame's
        shape, or the patch grid) determines every input's shape and names the compiled blob."""
        with self._lock:
            self._seen[name, key] += 1
            held = self._static.get(name)
            if held is not None and held.shape == key:
                return held.request
            blob = blob_name(key, self._ov_precision, self.threads, name)
            exported = self._entry is not None and self._entry.blob_path(blob).exists()
            if self._seen[name, key] >= STATIC_AFTER or exported:
                self._static.pop(name, None)  # the one held goes before the new one comes
                compiled, mapped, here = compile_or_import(
                    self._core, self._config, self._entry, blob,
                    lambda: fix_shapes(self._graph(name), [a.shape for a in inputs]), self.notes)
                self.compiles += here
                self._static[name] = _Compiled(compiled, key, mapped)
                self._compiled.pop(name, None)  # its weights go; imported again if a new shape comes
                return self._static[name].request
        return self._request(name)

    def prepare_dynamic(self) -> float:
        """Compile (or import) the encoder and the window graph now; seconds it took. At a first
        conversion: says what compiling costs and finds a graph that does not compile here before
        the caller relies on it. The streaming graphs compile at their first use."""
        import time

        t0 = time.perf_counter()
        for name in ("encoder", "window", "window_fine"):
            self._request(name)
        return time.perf_counter() - t0

    # ------------------------------------------------------------------------- running
    def encode(self, frames_nchw: np.ndarray) -> list[tuple[np.ndarray, ...]]:
        x = np.ascontiguousarray(frames_nchw, dtype=np.float32)
        h, w = x.shape[-2:]
        inputs = [x, self._position(h // PATCH_SIZE, w // PATCH_SIZE)]
        request = self._request_for("encoder", inputs, tuple(x.shape))
        request.infer(dict(enumerate(inputs)), share_inputs=True)
        taps = [request.get_output_tensor(i).data for i in range(TAPS)]
        return [tuple(t[i:i + 1].copy() for t in taps) for i in range(x.shape[0])]

    def decode_window(self, features: list[tuple[np.ndarray, ...]], grid_hw: tuple[int, int]) -> np.ndarray:
        """The temporal half over the window, then the per-frame half ``FINE_CHUNK`` frames at a
        time (the original's micro-batch: a window's largest maps are never all held at once)."""
        grid = np.zeros(grid_hw, np.float32)  # the grid: read through its shape only
        coarse = self._request("window")
        coarse.infer({0: np.concatenate([f[2] for f in features]), 1: np.concatenate([f[3] for f in features]),
                      2: grid})
        path = coarse.get_output_tensor(0).data.copy()
        fine = self._request("window_fine")
        depth = []
        for start in range(0, len(features), FINE_CHUNK):
            chunk = features[start:start + FINE_CHUNK]
            fine.infer({0: np.concatenate([f[0] for f in chunk]), 1: np.concatenate([f[1] for f in chunk]),
                        2: path[start:start + FINE_CHUNK], 3: grid})
            depth.append(fine.get_output_tensor(0).data.copy())
        return np.concatenate(depth)

    def decode_stream(self, features: tuple[np.ndarray, ...], grid_hw: tuple[int, int],
                      context: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        inputs = [*features[:TAPS], np.zeros(grid_hw, np.float32)]
        if context:
            inputs += self._slot_inputs(context)
            request = self._request_for("stream", inputs, grid_hw)
        else:  # a stream's first frame: once
            request = self._request("stream_first")
        request.infer(dict(enumerate(inputs)), share_inputs=True)  # read-only inputs: no copy into the request
        outputs = [request.get_output_tensor(i).data.copy() for i in range(len(request.model_outputs))]
        return outputs[0][0], tuple(outputs[1:])

    def _slot_inputs(self, context: list[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
        """The ``stream`` graph's cached inputs: the slot buffers, with the states the slots do
        not hold yet written in, then the slots' positions."""
        shapes = [(s.shape[0], len(context), s.shape[2]) for s in context[0]]
        if [b.shape for b in self._slot_buffers] != shapes:  # the first stream, or a new grid
            self._slot_buffers = [np.empty(shape, np.float32) for shape in shapes]
            self._slots.clear()
        writes, positions = self._slots.place(context)
        for slot, states in writes:
            for buffer, state in zip(self._slot_buffers, states, strict=True):
                buffer[:, slot] = state[:, 0]
        return [*self._slot_buffers, np.asarray(positions, np.int64)]

    def describe(self) -> str:
        return f"openvino cpu {precision_name(self.dtype)}"
