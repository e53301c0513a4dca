"""Video Depth Anything on OpenVINO: the ``TemporalBackend`` of ``runtime/temporal.py`` over the
graphs ``openvino_temporal_graph.py`` converts (encoder, window, stream, stream_first), compiled
for the CPU. No torch here: a cached model runs without it.

Each graph is compiled once for any shape (its blob exported to the cache entry, so the next
run imports it in a fraction of a second) and run with its own infer request. The encoder, the
largest part, also gets a model compiled for one shape (36 ms against 46 for the dynamic one on
a 336x252 frame in bf16 on a quiet host; less on a busy one) by the per-image backend's rule:
once a shape has come ``STATIC_AFTER`` times (a camera's frames, a window's new frames), or at
once when an earlier run exported its blob.
One encoder is held at a time, so memory stays that of one: the dynamic one goes when a static
one comes (a camera and a clip's windows keep one shape), and is imported again if needed.
Outputs are copied out of the requests: the next call would overwrite them, and the clip
runners keep features and states across calls.
"""
from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import numpy as np

from ...model.configs import PATCH_SIZE
from ...model.errors import CheckpointError
from ..position import PositionCache
from . import precision_name
from .openvino_backend import STATIC_AFTER, _Compiled, blob_name, compile_or_import, fix_input_shape, setup_cpu
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
        self._context_buffers: dict[int, np.ndarray] = {}  # streaming: see _context_input
        self._encoder_seen: Counter[tuple[int, ...]] = Counter()
        self._static_encoder: _Compiled | None = None  # the encoder compiled for one shape, when held
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

    def _encoder_request(self, shape: tuple[int, ...]) -> Any:
        """The encoder's request for frames of ``shape``: its own static model when the rule in
        the module docstring says so, else the dynamic one."""
        with self._lock:
            self._encoder_seen[shape] += 1
            held = self._static_encoder
            if held is not None and held.shape == shape:
                return held.request
            name = blob_name(shape, self._ov_precision, self.threads, "encoder")
            exported = self._entry is not None and self._entry.blob_path(name).exists()
            if self._encoder_seen[shape] >= STATIC_AFTER or exported:
                self._static_encoder = None  # the one held goes before the new one comes
                compiled, blob, here = compile_or_import(
                    self._core, self._config, self._entry, name,
                    lambda: fix_input_shape(self._graph("encoder"), shape, int(self.recipe["embed_dim"])), self.notes)
                self.compiles += here
                self._static_encoder = _Compiled(compiled, shape, blob)
                self._compiled.pop("encoder", None)  # its weights go; imported again if a new shape comes
                return self._static_encoder.request
        return self._request("encoder")

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
        request = self._encoder_request(tuple(x.shape))
        request.infer({0: x, 1: self._position(h // PATCH_SIZE, w // PATCH_SIZE)}, share_inputs=True)
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
        request = self._request("stream" if context else "stream_first")
        inputs: dict[int, np.ndarray] = {i: features[i] for i in range(TAPS)}
        inputs[TAPS] = np.zeros(grid_hw, np.float32)
        if context:
            for i in range(len(context[0])):
                inputs[TAPS + 1 + i] = self._context_input(i, [states[i] for states in context])
        request.infer(inputs, share_inputs=True)  # read-only inputs: no copy into the request
        outputs = [request.get_output_tensor(i).data.copy() for i in range(len(request.model_outputs))]
        return outputs[0][0], tuple(outputs[1:])

    def _context_input(self, index: int, states: list[np.ndarray]) -> np.ndarray:
        """The cached states of one kind concatenated along time, into a buffer kept from frame
        to frame: a fresh array each frame (tens of MB) would fault its pages in every time."""
        shape = list(states[0].shape)
        shape[1] = sum(s.shape[1] for s in states)
        buffer = self._context_buffers.get(index)
        if buffer is None or list(buffer.shape) != shape:
            buffer = self._context_buffers[index] = np.empty(shape, np.float32)
        return np.concatenate(states, axis=1, out=buffer)

    def describe(self) -> str:
        return f"openvino cpu {precision_name(self.dtype)}"
