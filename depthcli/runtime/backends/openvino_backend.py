"""The OpenVINO backend: depthcli's model converted once (cached on disk), compiled for the CPU.

Precision is a compile-time choice on the one stored float32 graph: ``f32`` is asked for
explicitly (OpenVINO would otherwise run bf16 on CPUs that have it, ~8e-3 off), ``bf16`` where
the CPU has AVX512-BF16 or AMX.

Shapes: the stored graph takes any size, but a model compiled for exactly one shape is planned
statically and runs 3-10% faster (measured on vits and vitb, f32 and bf16). So the first input
gets a model compiled for its own shape (~0.3 s vits, ~0.8 s vitb), which is all a single image,
a video, a camera or a folder of same-size photos ever needs; a different size switches to the
dynamic model, and a size that then comes ``STATIC_AFTER`` times in a row gets its own again.
Only one compiled model is held at a time, because each holds its own copy of the weights.

Memory: the graph itself is not kept once it is compiled. It is read again from its cache entry
when another shape needs compiling (~0.1 s), and read into memory rather than mapped, so the
weights the plugin copied into its own layout are freed with the graph (measured on vitb f32:
steady RSS -135 MiB against a mapped graph, -540 MiB against keeping it). Only a graph that
could not be cached stays in memory.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...model import CheckpointError, DepthAnything
from ...model.configs import PATCH_SIZE
from . import precision_name
from .openvino_cache import ModelCache, read_graph
from .openvino_graph import convert, float_cpu_model, position_encoding

OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}
TORCH_DTYPE = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
STATIC_AFTER = 2  # compile a shape's own model when it comes this many times in a row


def ov_version() -> str:
    import openvino as ov

    return ov.__version__.split("-")[0]


def cpu_supports_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class _Compiled:
    """One compiled model and its reusable infer request."""

    def __init__(self, compiled: Any, shape: tuple[int, ...] | None = None) -> None:
        self.shape = shape  # None: the dynamic model, any shape
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.lock = threading.Lock()


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, model: DepthAnything, *, precision: str = "fp32", threads: int | None = None,
                 weights_sha256: str | None = None, cache: ModelCache | None | bool = True,
                 static_shapes: bool = True) -> None:
        import openvino as ov

        if precision not in OV_PRECISION:
            raise ValueError(f"the openvino backend runs fp32 or bf16, not {precision}")
        from ..threads import inference_threads

        self.model = float_cpu_model(model)  # position encodings come from its exact, cached resize
        self.version = self.model.config.version
        self.device = torch.device("cpu")
        self.threads = threads or inference_threads()
        self.notes: list[str] = []
        self._core = ov.Core()
        self._config = {"INFERENCE_PRECISION_HINT": OV_PRECISION[precision],
                        "INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY"}
        self._lock = threading.Lock()
        self._positions: dict[tuple[int, int], np.ndarray] = {}
        self._static_shapes = static_shapes
        self._streak: tuple[tuple[int, ...] | None, int] = (None, 0)  # last shape, times in a row

        # what the plugin will run: bf16 asked of a CPU without it runs f32
        actual = "bf16" if precision == "bf16" and cpu_supports_bf16() else "f32"
        self.dtype = TORCH_DTYPE[actual]
        self._current: _Compiled | None = None
        self._graph_xml: Path | None = None  # where the graph is read again for each compile
        self._graph: Any | None = None  # the graph in memory: until its first compile, or always if not cached
        converted_s, where = self._load_or_convert(weights_sha256, cache)
        if converted_s is not None:
            # the first use: compile now, to say in one line what it cost and to find a graph
            # that does not compile here before the caller relies on it (the CLI's `auto` falls
            # back to torch); it runs the first input, and a repeated size then gets its own
            t0 = time.perf_counter()
            self._current = self._compile(None)
            compile_s = time.perf_counter() - t0
            self.notes.append(f"openvino {ov_version()}: converted the model in {converted_s:.1f} s"
                              f"{where}, compiled it for the CPU ({precision_name(self.dtype)}, "
                              f"{self.threads} thread{'s' if self.threads != 1 else ''}) in {compile_s:.1f} s")

    # ------------------------------------------------------------------------- building
    def _load_or_convert(self, weights_sha256: str | None, cache: ModelCache | None | bool
                         ) -> tuple[float | None, str]:
        """Find the graph (``self._graph``, ``self._graph_xml``): (conversion seconds, or None on a
        cache hit; where it was cached, for the note)."""
        if cache is False:
            self._graph, seconds = convert(self.model)
            return seconds, " (not cached)"
        store = cache if isinstance(cache, ModelCache) else ModelCache()
        from ..fingerprint import tensors_sha256
        from .openvino_cache import entry_key

        if weights_sha256 is None:
            weights_sha256 = tensors_sha256(self.model.state_dict())
        key, material = entry_key(weights_sha256, self.model)
        self._graph, problem = store.load(key)
        if self._graph is not None:
            self._graph_xml = store.graph_xml(key)
            return None, ""
        self._graph, seconds = convert(self.model)
        try:
            entry = store.store(key, self._graph, material)
        except OSError as e:
            return seconds, f" (cannot cache it in {store.root}: {e.strerror or e}; converting every run)"
        self._graph_xml = store.graph_xml(key)
        self._graph = None  # converted graphs share the torch tensors' memory: read the stored copy
        rebuilt = f"; the cached copy was broken ({problem}) and was rebuilt" if problem else ""
        return seconds, f" (cached in {_home_relative(entry)}{rebuilt})"

    def graph(self) -> Any:
        """A fresh copy of the stored float32 ``openvino.Model`` (dynamic shapes), the caller's
        to reshape or compile."""
        if self._graph is not None:
            return self._graph.clone()
        assert self._graph_xml is not None
        try:
            return read_graph(self._graph_xml)
        except Exception as e:  # noqa: BLE001 - any failure to read it back says the same
            raise CheckpointError(f"the converted model in {self._graph_xml.parent} was removed or changed "
                                  f"while depthcli ran ({type(e).__name__}): run again to rebuild it") from e

    def _take_graph(self) -> Any:
        """The graph for one compile; the in-memory copy is handed over (not kept) when the
        cache entry can give it again."""
        if self._graph is None or self._graph_xml is None:
            return self.graph()
        graph, self._graph = self._graph, None
        return graph

    def _compile(self, shape: tuple[int, ...] | None) -> _Compiled:
        """The graph compiled for any shape (None) or for exactly ``shape``."""
        import openvino as ov

        graph = self._take_graph()
        if shape is not None:
            tokens = 1 + (shape[2] // PATCH_SIZE) * (shape[3] // PATCH_SIZE)
            graph.reshape({graph.inputs[0]: ov.PartialShape(list(shape)),
                           graph.inputs[1]: ov.PartialShape([1, tokens, self.model.config.encoder.embed_dim])})
        compiled = self._core.compile_model(graph, "CPU", self._config)
        del graph  # the plugin holds what it needs
        _return_freed_memory()
        return _Compiled(compiled, shape)

    def _compiled_for(self, shape: tuple[int, ...]) -> _Compiled:
        """The compiled model to run ``shape`` with (switching models as the docstring says)."""
        last, count = self._streak
        count = count + 1 if shape == last else 1
        self._streak = (shape, count)
        current = self._current
        if current is not None and current.shape == shape:
            return current
        static = self._static_shapes and (current is None or count >= STATIC_AFTER)
        if current is not None and current.shape is None and not static:
            return current  # the dynamic model runs any shape
        self._current = None
        del current  # the old weights go before the new come
        _return_freed_memory()
        self._current = self._compile(shape if static else None)
        return self._current

    # ------------------------------------------------------------------------- running
    def _position(self, grid_h: int, grid_w: int) -> np.ndarray:
        key = (grid_h, grid_w)
        if key not in self._positions:
            self._positions[key] = np.ascontiguousarray(position_encoding(self.model, grid_h, grid_w).numpy())
        return self._positions[key]

    def to_input(self, input_bchw: torch.Tensor) -> tuple[np.ndarray, np.ndarray, _Compiled]:
        """The input as float32 NumPy, its position encoding, and the compiled model that will
        run it (compiling a shape's own model happens here, outside the timed forward)."""
        x = np.ascontiguousarray(input_bchw.detach().to("cpu", torch.float32).numpy())
        h, w = x.shape[-2:]
        with self._lock:
            return x, self._position(h // PATCH_SIZE, w // PATCH_SIZE), self._compiled_for(tuple(x.shape))

    def run(self, staged: tuple[np.ndarray, np.ndarray, _Compiled]) -> torch.Tensor:
        x, position, target = staged
        with target.lock:  # one infer request per compiled model: one call at a time
            target.request.infer({0: x, 1: position}, share_inputs=True)
            return torch.from_numpy(target.request.get_output_tensor(0).data.copy())

    def describe(self) -> str:
        return f"openvino cpu {precision_name(self.dtype)}"

    def release_torch_weights(self) -> None:
        """Free the torch copy of the weights once OpenVINO holds its own: a predictor on this
        backend never runs the torch model, and only reads the position table from it (kept).
        Saves the checkpoint's size in resident memory (~100 MiB vits, ~390 MiB vitb, ~1.3 GiB
        vitl). Only for a model the caller owns (build_predictor), never a user's module."""
        keep = {id(p) for p in self.model.encoder.position_encoding.parameters()}
        with torch.no_grad():
            for param in self.model.parameters():
                # the kept table gets memory of its own: a checkpoint read by mapping its file
                # has every tensor in one storage, which any view would keep whole
                param.data = param.data.clone() if id(param) in keep else torch.empty(0, dtype=param.dtype)
        _return_freed_memory()


def _return_freed_memory() -> None:
    """glibc keeps freed heap memory for reuse; hand it back to the system (Linux only)."""
    import ctypes
    import ctypes.util
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def _home_relative(path: Path) -> str:
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)
