"""Video Depth Anything on OpenVINO: the ``TemporalBackend`` of ``runtime/temporal.py`` over the
graphs ``openvino_temporal_graph.py`` converts (encoder, window, stream, stream_first), compiled
for the CPU. No torch here: a cached model runs without it.

Each graph is compiled once for any shape (its blob exported to the cache entry, so the next
run imports it in a fraction of a second) and run with its own infer request. Outputs are
copied out of the requests: the next call would overwrite them, and the clip runners keep
features and states across calls.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ...model.configs import PATCH_SIZE
from ...model.errors import CheckpointError
from ..position import PositionCache
from . import precision_name
from .openvino_backend import compile_or_import, setup_cpu
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
                    self._core, self._config, self._entry, f"{name}-dynamic-{self._ov_precision}-t{self.threads}",
                    lambda: self._graph(name), self.notes)
                self.compiles += here
                self._compiled[name] = (compiled, compiled.create_infer_request(), blob)
            return self._compiled[name][1]

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
        request = self._request("encoder")
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
                inputs[TAPS + 1 + i] = np.concatenate([states[i] for states in context], axis=1)
        request.infer(inputs)
        outputs = [request.get_output_tensor(i).data.copy() for i in range(len(request.model_outputs))]
        return outputs[0][0], tuple(outputs[1:])

    def describe(self) -> str:
        return f"openvino cpu {precision_name(self.dtype)}"
