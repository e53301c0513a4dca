"""The OpenVINO backend: depthcli's model converted once (cached on disk), compiled for the CPU.

Precision is a compile-time choice on the one stored float32 graph: ``f32`` is asked for
explicitly (OpenVINO would otherwise run bf16 on CPUs that have it, ~8e-3 off), ``bf16`` where
the CPU has AVX512-BF16 or AMX.

Shapes: the stored model takes any size. When the same size comes twice in a row (every frame
of a video or a camera, a folder of same-size photos) it is recompiled for exactly that shape,
which OpenVINO plans statically: 3-10% faster per frame (measured on vits and vitb, f32 and
bf16) for one compile (~0.3 s vits, ~0.6 s vitb). Only one compiled model is held at a time,
because each holds its own copy of the weights (+560 MiB for vitb in f32): the shape-specific
one replaces the dynamic one, and a different size brings the dynamic one back.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...model import DepthAnything
from ...model.configs import PATCH_SIZE
from . import precision_name
from .openvino_cache import ModelCache
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

        self.ov_model, converted_s, where = self._load_or_convert(weights_sha256, cache)
        t0 = time.perf_counter()
        self._current = self._compile(None)
        compile_s = time.perf_counter() - t0
        # what the plugin will really run (bf16 asked of a CPU without it runs f32)
        actual = self._current.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.dtype = TORCH_DTYPE.get(actual.get_type_name() if hasattr(actual, "get_type_name") else str(actual),
                                     torch.float32)
        if converted_s is not None:
            self.notes.append(f"openvino {ov_version()}: converted the model in {converted_s:.1f} s"
                              f"{where}, compiled it for the CPU ({precision_name(self.dtype)}, "
                              f"{self.threads} thread{'s' if self.threads != 1 else ''}) in {compile_s:.1f} s")

    # ------------------------------------------------------------------------- building
    def _load_or_convert(self, weights_sha256: str | None, cache: ModelCache | None | bool
                         ) -> tuple[Any, float | None, str]:
        """(openvino.Model, conversion seconds or None on a cache hit, where it was cached)."""
        if cache is False:
            ov_model, seconds = convert(self.model)
            return ov_model, seconds, " (not cached)"
        store = cache if isinstance(cache, ModelCache) else ModelCache()
        from ..fingerprint import tensors_sha256
        from .openvino_cache import entry_key

        if weights_sha256 is None:
            weights_sha256 = tensors_sha256(self.model.state_dict())
        key, material = entry_key(weights_sha256, self.model)
        ov_model, problem = store.load(key)
        if ov_model is not None:
            return ov_model, None, ""
        ov_model, seconds = convert(self.model)
        try:
            entry = store.store(key, ov_model, material)
        except OSError as e:
            return ov_model, seconds, f" (cannot cache it in {store.root}: {e.strerror or e}; converting every run)"
        rebuilt = f"; the cached copy was broken ({problem}) and was rebuilt" if problem else ""
        return ov_model, seconds, f" (cached in {_home_relative(entry)}{rebuilt})"

    def _compile(self, shape: tuple[int, ...] | None) -> _Compiled:
        """The stored model compiled for any shape (None) or for exactly ``shape``."""
        if shape is None:
            return _Compiled(self._core.compile_model(self.ov_model, "CPU", self._config))
        import openvino as ov

        fixed = self.ov_model.clone()
        tokens = 1 + (shape[2] // PATCH_SIZE) * (shape[3] // PATCH_SIZE)
        fixed.reshape({fixed.inputs[0]: ov.PartialShape(list(shape)),
                       fixed.inputs[1]: ov.PartialShape([1, tokens, self.model.config.encoder.embed_dim])})
        return _Compiled(self._core.compile_model(fixed, "CPU", self._config), shape)

    def _compiled_for(self, shape: tuple[int, ...]) -> _Compiled:
        """The compiled model to run ``shape`` with (switching models as the docstring says)."""
        last, count = self._streak
        count = count + 1 if shape == last else 1
        self._streak = (shape, count)
        current = self._current
        if current.shape == shape:
            return current
        if current.shape is None and not (self._static_shapes and count >= STATIC_AFTER):
            return current
        wanted = shape if self._static_shapes and count >= STATIC_AFTER else None
        self._current = None  # type: ignore[assignment] - the old weights go before the new come
        del current
        self._current = self._compile(wanted)
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
                if id(param) not in keep:
                    param.data = torch.empty(0, dtype=param.dtype)
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
