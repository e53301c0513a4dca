"""A torch model -> an OpenVINO backend: find its converted graph in the cache, or convert it
(``openvino_graph.convert``) and store it. The only OpenVINO code that needs torch; once an
entry exists, ``OpenVinoBackend.from_entry`` runs it without.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from .openvino_backend import OpenVinoBackend, home_relative, ov_version
from .openvino_cache import ModelCache, entry_key
from .openvino_graph import convert, float_cpu_model, position_table, recipe
from .openvino_temporal import OpenVinoTemporalBackend


def backend_for_model(model: nn.Module, *, precision: str = "fp32", threads: int | None = None,
                      weights_sha256: str | None = None, cache: ModelCache | None | bool = True,
                      static_shapes: bool = True, defer_first_compile: bool = False) -> Any:
    """The OpenVINO backend running ``model`` (an ``OpenVinoBackend``, or for a clip model an
    ``OpenVinoTemporalBackend``): from its cache entry when one exists (keyed by
    ``weights_sha256``, the checkpoint's content; by the tensors' own hash when not given),
    else converted now, stored, and compiled for any shape (its ``notes`` say what it cost).
    ``cache=False`` converts every time and stores nothing. ``defer_first_compile=True`` leaves
    that first compile to ``finish_first_use``, so a caller can let the torch model go first (the
    compile then does not hold two copies of the weights) and fall back to torch when it fails;
    an entry found in the cache is then compiled there too (an earlier run's first compile may
    have failed). Otherwise an entry found is compiled at its first input, as a cached run's."""
    model = float_cpu_model(model)
    temporal = model.config.traits.temporal
    options = {"precision": precision, "threads": threads}
    if not temporal:
        options["static_shapes"] = static_shapes
    kind = OpenVinoTemporalBackend if temporal else OpenVinoBackend
    if cache is False:
        graphs, seconds = _convert(model)
        backend = kind(_recipe(model, graphs), position_table(model), **_in_memory(graphs, temporal), **options)
        return _first_use(backend, seconds, " (not cached)", defer_first_compile)
    store = cache if isinstance(cache, ModelCache) else ModelCache()
    if weights_sha256 is None:
        from ..fingerprint import tensors_sha256

        weights_sha256 = tensors_sha256(model.state_dict())
    key, material = entry_key(weights_sha256, model.config.to_dict())
    entry, problem = store.find(key)
    if entry is not None:
        backend = kind.from_entry(entry, **options)
        return _first_use(backend, None, "", defer=True) if defer_first_compile else backend
    graphs, seconds = _convert(model)
    try:
        entry = store.store(key, graphs, material, _recipe(model, graphs), position_table(model))
    except OSError as e:
        backend = kind(_recipe(model, graphs), position_table(model), **_in_memory(graphs, temporal), **options)
        return _first_use(backend, seconds, f" (cannot cache it in {store.root}: {e.strerror or e}; "
                                            f"converting every run)", defer_first_compile)
    del graphs  # converted graphs share the torch tensors' memory: the stored copies are compiled
    rebuilt = f"; the cached copy was broken ({problem}) and was rebuilt" if problem else ""
    backend = kind.from_entry(entry, **options)
    return _first_use(backend, seconds, f" (cached in {home_relative(entry.folder)}{rebuilt})", defer_first_compile)


def _convert(model: nn.Module) -> tuple[Any, float]:
    """(the graph, or {name: graph} for a clip model; seconds the conversion took)."""
    if not model.config.traits.temporal:
        return convert(model)
    from .openvino_temporal_graph import convert_temporal

    converted = convert_temporal(model)
    return {name: graph for name, (graph, _) in converted.items()}, sum(s for _, s in converted.values())


def _recipe(model: nn.Module, graphs: Any) -> dict[str, Any]:
    return {**recipe(model), "graphs": list(graphs) if isinstance(graphs, dict) else ["model"]}


def _in_memory(graphs: Any, temporal: bool) -> dict[str, Any]:
    """The constructor argument of a backend over graphs that could not be cached."""
    return {"graphs": graphs} if temporal else {"graph": graphs}


def _first_use(backend: OpenVinoBackend, converted_s: float | None, where: str, defer: bool) -> OpenVinoBackend:
    """Compile (or import) the dynamic model at once (``defer``: when ``finish_first_use`` is
    called): to find a graph that does not compile here before the caller relies on it (``auto``
    then falls back to torch), and after a conversion (``converted_s`` not None) to say in one
    line what it cost."""
    backend.pending_first_use = (converted_s, where)
    return backend if defer else finish_first_use(backend)


def finish_first_use(backend: Any) -> Any:
    """The first compile that ``backend_for_model(..., defer_first_compile=True)`` left pending
    (else nothing): raises what compiling raises."""
    pending = getattr(backend, "pending_first_use", None)
    if pending is None:
        return backend
    converted_s, where = pending
    backend.pending_first_use = None
    compile_s = backend.prepare_dynamic()
    if converted_s is None:
        return backend
    backend.notes.insert(0, f"openvino {ov_version()}: converted the model in {converted_s:.1f} s{where}, "
                            f"compiled it for the CPU ({_precision(backend)}, {backend.threads} "
                            f"thread{'s' if backend.threads != 1 else ''}) in {compile_s:.1f} s")
    return backend


def _precision(backend: Any) -> str:
    from . import precision_name

    return precision_name(backend.dtype)
