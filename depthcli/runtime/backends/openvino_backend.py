"""The OpenVINO backend: a converted model (``openvino_cache.Entry``) compiled for the CPU. No
torch here: a cached model runs without it (the conversion is ``openvino_convert.py``).

Precision is a compile-time choice on the one stored float32 graph: ``f32`` is asked for
explicitly (OpenVINO would otherwise run bf16 on CPUs that have it, ~8e-3 off), ``bf16`` where
the CPU has AVX512-BF16 or AMX.

Shapes. The stored graph takes any size (the *dynamic* model); a model compiled for exactly one
shape (*static*) is planned statically and runs 3-10% faster, but compiling one costs 0.3-3 s.
Every compiled model is exported to the cache entry, so a later run imports it in ~0.2 s
instead of compiling again. Per input shape, in order:
1. a compiled model already held for it (static or not) runs it;
2. its static blob, when an earlier run exported one, is imported;
3. once a shape has come ``STATIC_AFTER`` times in this process (a folder, a video, a camera),
   its static model is compiled and exported: the compile is earned back over the inputs still
   to come and by every later run;
4. so is a run's first shape when one of the latest runs started with it too (the entry's
   ``first-shapes.json``): one call per photo in a shell loop over one camera's pictures pays
   one static compile at its second call, and every later call imports it;
5. otherwise the dynamic model runs it (imported from its blob, or compiled once and exported).
So a first photo never pays a static compile, a run pays at most one for a shape it has seen
once, and a folder that alternates between a few shapes (landscape and portrait photos)
compiles each shape once, then switches between held models.
Compiled models are kept in a least-recently-used set whose size follows memory: each holds its
own copy of the weights, so at most ``keep`` of them (``_keep_count``: a quarter of the free
memory, 2 to ``MAX_KEPT``). A shape's own model replaces the dynamic one when that one's blob is
in the cache (imported again in a fraction of a second if a new shape comes): a run over one
shape holds one copy of the weights, not two, and never compiles while holding another
(DA3MONO-LARGE's first run over three photos of one size: 7.7 GB peak before, 4.8 GB after).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
import time
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ...model.configs import PATCH_SIZE
from ...model.errors import CheckpointError
from ..position import PositionCache
from . import precision_name
from .openvino_cache import Entry, read_graph

OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}
DTYPE_NAME = {"f32": "float32", "bf16": "bfloat16"}
STATIC_AFTER = 2  # a shape's own model is compiled when it has come this many times
MAX_KEPT = 5
MEMORY_SHARE = 0.25


def ov_version() -> str:
    import openvino as ov

    return ov.__version__.split("-")[0]


def cpu_supports_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class _Compiled:
    """One compiled model and its reusable infer request."""

    def __init__(self, compiled: Any, shape: tuple[int, ...] | None, blob: Any = None) -> None:
        self.shape = shape  # None: the dynamic model, any shape
        self.compiled = compiled
        self.blob = blob  # an imported model may read its weights from the mapped blob: kept while it lives
        self.request = compiled.create_infer_request()
        self.lock = threading.Lock()


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, recipe: dict[str, Any], position_table: np.ndarray, *, entry: Entry | None = None,
                 graph: Any = None, precision: str = "fp32", threads: int | None = None,
                 static_shapes: bool = True) -> None:
        """From a cache ``entry`` (the graph read from it when a compile needs it) or, when the
        model could not be cached, an in-memory ``graph``."""
        self.recipe = recipe
        self.outputs = tuple(recipe["outputs"])
        self.embed_dim = int(recipe["embed_dim"])
        self.notes: list[str] = []
        self._entry, self._graph = entry, graph
        self._position = PositionCache(position_table)  # the encoding fed to the graph, per grid
        setup_cpu(self, precision, threads)
        self._static_shapes = static_shapes
        self._lock = threading.Lock()
        self._held: OrderedDict[tuple[int, ...] | None, _Compiled] = OrderedDict()
        self._seen: Counter[tuple[int, ...]] = Counter()
        self._keep = _keep_count(self._weights_bytes())
        self.compiles = 0  # compiled here (not imported): what the tests and the bench look at

    @classmethod
    def from_entry(cls, entry: Entry, **kwargs: Any) -> OpenVinoBackend:
        return cls(entry.recipe, entry.position_table(), entry=entry, **kwargs)

    def _weights_bytes(self) -> int:
        if self._entry is not None:
            return self._entry.weights_bytes()
        return 4 * int(self.recipe.get("parameters", 0))

    # ------------------------------------------------------------------------- compiling
    def _blob_name(self, shape: tuple[int, ...] | None) -> str:
        return blob_name(shape, self._ov_precision, self.threads)

    def _graph_for_compile(self) -> Any:
        """A fresh copy of the stored float32 ``openvino.Model`` (dynamic shapes), read from the
        entry after checking its bytes; the in-memory graph when the model is not cached."""
        if self._entry is None:
            return self._graph.clone()
        problem = self._entry.verify_graph()
        if problem is None:
            try:
                return read_graph(self._entry.xml())
            except Exception as e:  # noqa: BLE001 - any failure to read it back says the same
                problem = f"{type(e).__name__}"
        raise CheckpointError(f"the converted model in {self._entry.folder} was removed or changed "
                              f"({problem}): run again to rebuild it")

    def _compile(self, shape: tuple[int, ...] | None) -> _Compiled:
        """The model for ``shape`` (None: dynamic), imported from its blob when an earlier run
        exported one, else compiled (and exported for the next run)."""
        def graph() -> Any:
            g = self._graph_for_compile()
            return g if shape is None else fix_input_shape(g, shape, self.embed_dim)

        compiled, blob, compiled_here = compile_or_import(self._core, self._config, self._entry,
                                                          self._blob_name(shape), graph, self.notes)
        self.compiles += compiled_here
        return _Compiled(compiled, shape, blob)

    def _hold(self, shape: tuple[int, ...] | None) -> _Compiled:
        if shape is not None and None in self._held and self._dynamic_exported():
            del self._held[None]  # see the module docstring: a shape's own model replaces it
            _return_freed_memory()
        while len(self._held) >= self._keep:  # the old weights go before the new come
            self._held.popitem(last=False)
            _return_freed_memory()
        self._held[shape] = self._compile(shape)
        return self._held[shape]

    def _compiled_for(self, shape: tuple[int, ...]) -> _Compiled:
        """The compiled model to run ``shape`` with (see the module docstring for the rule)."""
        self._seen[shape] += 1
        for key in (shape, None):
            if key is None and self._static_shapes and self._static_ready(shape):
                return self._hold(shape)
            held = self._held.get(key)
            if held is not None:
                self._held.move_to_end(key)
                return held
        return self._hold(None)

    def _dynamic_exported(self) -> bool:
        return self._entry is not None and self._entry.blob_path(self._blob_name(None)).exists()

    def _static_ready(self, shape: tuple[int, ...]) -> bool:
        """Whether ``shape`` should get (or import) its own model now."""
        if self._seen[shape] >= STATIC_AFTER:
            return True
        if self._entry is None:
            return False
        name = self._blob_name(shape)
        if self._entry.blob_path(name).exists():
            return True
        first = len(self._seen) == 1 and self._seen[shape] == 1  # this run's first input
        return first and self._entry.note_first_shape(name)

    def prepare_dynamic(self) -> float:
        """Compile (or import) the dynamic model now; seconds it took. Used at a first
        conversion: it says in one line what the compile costs and finds a graph that does not
        compile here before the caller relies on it (the CLI's ``auto`` falls back to torch)."""
        t0 = time.perf_counter()
        with self._lock:
            if None not in self._held:
                self._hold(None)
        return time.perf_counter() - t0

    # ------------------------------------------------------------------------- running
    def to_input(self, input_bchw: np.ndarray) -> tuple[np.ndarray, np.ndarray, _Compiled]:
        """The input as contiguous float32, its position encoding, and the compiled model that
        will run it (compiling or importing happens here, outside the timed forward)."""
        x = np.ascontiguousarray(input_bchw, dtype=np.float32)
        h, w = x.shape[-2:]
        with self._lock:
            return x, self._position(h // PATCH_SIZE, w // PATCH_SIZE), self._compiled_for(tuple(x.shape))

    def run(self, staged: tuple[np.ndarray, np.ndarray, _Compiled]) -> dict[str, np.ndarray]:
        x, position, target = staged
        with target.lock:  # one infer request per compiled model: one call at a time
            target.request.infer({0: x, 1: position}, share_inputs=True)
            return {name: target.request.get_output_tensor(i).data.copy() for i, name in enumerate(self.outputs)}

    def describe(self) -> str:
        return f"openvino cpu {precision_name(self.dtype)}"

    @property
    def held_shapes(self) -> list[tuple[int, ...] | None]:
        """The shapes of the compiled models held now, least recently used first (None: dynamic)."""
        return list(self._held)


def blob_name(shape: tuple[int, ...] | None, ov_precision: str, threads: int, graph: str | None = None) -> str:
    """The cache entry's name for a compiled model: of ``graph`` (a clip model's; None: the one
    graph of a per-image model), for ``shape`` (None: the dynamic model), precision and threads."""
    kind = "dynamic" if shape is None else "static-" + "x".join(map(str, shape))
    return f"{graph + '-' if graph else ''}{kind}-{ov_precision}-t{threads}"


def fix_shapes(graph: Any, shapes: list[tuple[int, ...]]) -> Any:
    """``graph`` reshaped for inputs of exactly ``shapes`` (in input order): what a model
    compiled for one shape is compiled from."""
    import openvino as ov

    graph.reshape({port: ov.PartialShape(list(shape)) for port, shape in zip(graph.inputs, shapes, strict=True)})
    return graph


def fix_input_shape(graph: Any, shape: tuple[int, ...], embed_dim: int) -> Any:
    """``graph`` (inputs: image, position) reshaped for images of exactly ``shape`` (N, 3, H, W)."""
    tokens = 1 + (shape[2] // PATCH_SIZE) * (shape[3] // PATCH_SIZE)
    return fix_shapes(graph, [shape, (1, tokens, embed_dim)])


def setup_cpu(backend: Any, precision: str, threads: int | None) -> None:
    """What every OpenVINO backend sets up alike: ``device``, ``threads``, the ``dtype`` the
    plugin will run (bf16 asked of a CPU without it runs f32), the core and the compile config
    (``_core``, ``_ov_precision``, ``_config``)."""
    import openvino as ov

    from ..threads import inference_threads

    if precision not in OV_PRECISION:
        raise ValueError(f"the openvino backend runs fp32 or bf16, not {precision}")
    backend.device = "cpu"
    backend.threads = threads or inference_threads()
    backend._core = ov.Core()
    backend._ov_precision = "bf16" if precision == "bf16" and cpu_supports_bf16() else "f32"
    backend.dtype = DTYPE_NAME[backend._ov_precision]
    backend._config = {"INFERENCE_PRECISION_HINT": backend._ov_precision, "INFERENCE_NUM_THREADS": backend.threads,
                       "PERFORMANCE_HINT": "LATENCY"}


def compile_or_import(core: Any, config: dict[str, Any], entry: Entry | None, blob_name: str,
                      graph: Any, notes: list[str]) -> tuple[Any, Any, bool]:
    """(compiled model, the mapped blob it may read its weights from, whether it was compiled
    here): imported from the entry's blob ``blob_name`` when an earlier run exported one, else
    compiled from ``graph()`` and exported for the next run. A broken blob is deleted, said in
    ``notes`` and compiled again."""
    if entry is not None:
        blob, problem = entry.read_blob(blob_name)
        if blob is not None:
            try:
                return core.import_model(_as_tensor(blob), "CPU", config), blob, False
            except Exception as e:  # noqa: BLE001 - a blob of another build or damaged: compile again
                entry.drop_blob(blob_name)
                problem = f"{type(e).__name__}"
        if problem is not None:
            notes.append(f"the compiled model {blob_name} in {entry.folder} was broken ({problem}): "
                         f"compiled it again")
    g = graph()
    compiled = core.compile_model(g, "CPU", config)
    del g  # the plugin holds what it needs
    if entry is not None:
        entry.write_blob(blob_name, compiled.export_model().getbuffer())
    _return_freed_memory()
    return compiled, None, True


def _as_tensor(blob: np.ndarray) -> Any:
    """A mapped blob as an OpenVINO tensor without a copy (import reads it from the mapping)."""
    import openvino as ov

    return ov.Tensor(blob, shared_memory=True)


def _keep_count(weights_bytes: int) -> int:
    """How many compiled models to hold: a quarter of the free memory's worth of weights, at
    least 2 (the dynamic model and one shape), at most MAX_KEPT."""
    from ..memory import host_available_bytes

    free = host_available_bytes()
    if not weights_bytes or free is None:
        return 2
    return max(2, min(MAX_KEPT, int(free * MEMORY_SHARE // weights_bytes)))


def _return_freed_memory() -> None:
    """glibc keeps freed heap memory for reuse; hand it back to the system (Linux only)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def home_relative(path: Path) -> str:
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)
