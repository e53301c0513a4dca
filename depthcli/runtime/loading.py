"""Turn a model source (checkpoint path, folder, or registry name) into a ready network or
predictor.

``build_predictor`` is what every door calls. On the CPU with OpenVINO, a checkpoint whose
converted model is cached (``known_weights`` remembers its sha256 and config, the cache entry
holds the graph and its compiled blobs) gives a predictor without importing torch or reading
the checkpoint: ~0.3 s instead of ~3 s. Everything else (a first use, the torch backend, a GPU)
loads the model with torch.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..model.errors import CheckpointError
from .device import device_type, pick_device, pick_dtype
from .spec import PredictorSpec


def resolve_source(source: str | Path, *, label: str | None = None) -> Path:
    """A local path as is; otherwise a registry name, fetched into the Hugging Face cache.
    ``label``: the model as the user gave it (``PredictorSpec.source_label``), for the messages."""
    label = label or str(source)
    path = Path(source).expanduser()
    if path.exists():
        if path.is_file() and path.stat().st_size == 0:  # as an empty image is: not a torch EOFError
            raise CheckpointError(f"{label}: empty file")
        return path
    from ..hub import registry

    if str(source) in registry.MODELS:
        from ..hub.download import fetch_model

        return fetch_model(str(source))
    raise CheckpointError(f"{label}: no such file, folder or model name "
                          f"(names: {', '.join(registry.MODELS)})")


@contextlib.contextmanager
def named_as_given(path: Path, label: str) -> Iterator[None]:
    """Checkpoint errors naming the model as the user gave it. The model layer names a file by
    its base name (``m.pth: ...``); the user typed ``models/v2/m.pth``, or a registry name whose
    file sits deep in the cache, or set ``$DEPTHCLI_MODEL``: that is what the message starts with."""
    try:
        yield
    except CheckpointError as e:
        text = str(e)
        for prefix in (f"{path}: ", f"{path.name}: "):
            if text.startswith(prefix):
                raise CheckpointError(f"{label}: {text[len(prefix):]}") from e
        if label != str(path):
            raise CheckpointError(f"{label}: {text}") from e
        raise


def read_checkpoint_as_given(source: str | Path, *, label: str | None = None, version: int | None = None,
                             max_depth: float | None = None):  # noqa: ANN201 - model.Checkpoint
    """``model.read_checkpoint`` of a path or registry name, its errors naming it as given."""
    from ..model import read_checkpoint

    label = label or str(source)
    path = resolve_source(source, label=label)
    with named_as_given(path, label):
        return read_checkpoint(path, version=version, max_depth=max_depth)


def load_model(source: str | Path, *, version: int | None = None, device: Any = None,
               dtype: Any = None, max_depth: float | None = None, label: str | None = None) -> Any:
    """Load a model of any supported family from any supported checkpoint, in eval mode.

    ``version`` (1 or 2) and ``max_depth`` (metres, V2 metric models) override what the file
    says. ``device`` defaults to the best available; ``dtype`` to float32 ("fp16"/"bf16" or a
    torch dtype accepted). ``label``: how errors name the model (default: ``source`` as given).
    """
    import torch

    from ..model import build_model, read_checkpoint
    from .device import torch_dtype

    dev = pick_device(device)
    dt = torch_dtype(pick_dtype(dtype, dev))
    label = label or str(source)
    path = resolve_source(source, label=label)
    try:
        with named_as_given(path, label):
            model = build_model(read_checkpoint(path, version=version, max_depth=max_depth))
    except CheckpointError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RuntimeError) as e:
        # a file that loads but whose contents make no sense (metadata "version": "x", keys that
        # are not strings, tensors of odd types): still a bad checkpoint, not a crash
        if "out of memory" in str(e).lower():
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise CheckpointError(f"{label}: not a usable checkpoint "
                              f"({type(e).__name__}: {first})") from e
    model = model.to(device=torch.device(dev), dtype=dt)
    if device_type(dev) in ("cpu", "cuda"):
        # the DPT head is convolutions on large maps: channels-last kernels run them 10-30% faster
        # (the same values to float rounding)
        model = model.to(memory_format=torch.channels_last)
    return model.eval()


class DeviceError(ValueError):
    """The requested device or precision is not available (exit code 4 in the CLI)."""


def build_predictor(spec: PredictorSpec):  # noqa: ANN201 - DepthPredictor
    """Load the model the spec names and wrap it in a predictor on the chosen backend, threads
    configured. One-line messages for the user (backend fallback, --fp16 on a CPU, first-use
    conversion) are in ``predictor.notes``.

    Raises ``DeviceError`` (device/precision unavailable), ``BackendUnavailable`` (a usage error:
    unknown backend, openvino asked for but not installed or on a GPU), ``CheckpointError`` (bad
    or missing model) or MemoryError / an out-of-memory RuntimeError; callers map them to their
    own errors.
    """
    from .backends import BackendUnavailable, choose_backend, requested_backend
    from .device import resolve_precision
    from .threads import configure_threads

    problem = spec.backend_device_problem()
    if problem:
        raise BackendUnavailable(problem)
    requested = requested_backend(spec.backend)
    try:
        # --backend openvino means the CPU: with --device auto it is not an error on a GPU box
        dev = pick_device("cpu" if requested == "openvino" and spec.device == "auto" else spec.device)
        precision, precision_note = resolve_precision(spec.precision, dev)
        dtype = pick_dtype(precision, dev)
    except ValueError as e:
        raise DeviceError(str(e)) from None
    name, backend_note = choose_backend(requested, device_type(dev), device_was_explicit=spec.device != "auto")
    notes = [n for n in (precision_note, backend_note) if n]
    label = spec.source_label
    path = resolve_source(spec.source, label=label)
    options = {"model_version": spec.model_version}
    sizes = {"size": spec.size, "max_side": spec.max_side, "batch": spec.batch or default_batch(dev)}
    if name == "openvino":
        predictor = _cached_openvino(path, options, precision or "fp32", sizes)
        if predictor is not None:
            configure_threads(dev, torch_runs_model=False)
            predictor.notes[:0] = notes
            return predictor
        import gc

        from .backends.openvino_convert import backend_for_model, finish_first_use
        from .fingerprint import checkpoint_sha256
        from .known_weights import remember

        net = load_model(path, version=spec.model_version, device="cpu", dtype="fp32", label=label)
        config = net.config
        configure_threads(dev)
        try:
            sha256 = checkpoint_sha256(path)
            backend = backend_for_model(net, precision=precision or "fp32", weights_sha256=sha256,
                                        defer_first_compile=True)
            # OpenVINO compiles its own copy of the weights: the torch one (maybe a mapped file) goes
            # first, with the reference cycles the conversion's module copies leave, so the first
            # run never holds both (a large model's first-run peak); a fallback loads it again
            del net
            gc.collect()
            finish_first_use(backend)
        except (BackendUnavailable, MemoryError):
            raise
        except Exception as e:  # noqa: BLE001 - a conversion failure must not end an `auto` run
            net = None  # the torch path below loads its own
            if requested == "openvino":
                raise CheckpointError(f"{label}: cannot run on OpenVINO ({type(e).__name__}: "
                                      f"{(str(e).strip().splitlines() or [''])[0][:160]})") from e
            notes.append(f"openvino could not run this model ({type(e).__name__}): using the torch backend")
        else:
            remember(path, options, sha256, config.to_dict())
            configure_threads(dev, torch_runs_model=False)
            predictor = _predictor_class(config)(config=config, backend=backend, **sizes)
            predictor.notes[:0] = notes
            return predictor
    net = load_model(path, version=spec.model_version, device=dev, dtype=dtype, label=label)
    configure_threads(dev)
    return _torch_predictor(net, notes, sizes)


def _torch_predictor(net: Any, notes: list[str], sizes: dict[str, Any]):  # noqa: ANN202
    """The torch model's predictor (its default backend runs the torch module)."""
    predictor = _predictor_class(net.config)(net, **sizes)
    predictor.notes[:0] = notes
    return predictor


def _predictor_class(config: Any) -> type:
    """``DepthPredictor``, or ``TemporalPredictor`` for a clip family (``Traits.temporal``)."""
    if config.traits.temporal:
        from .temporal import TemporalPredictor

        return TemporalPredictor
    from .predictor import DepthPredictor

    return DepthPredictor


def _cached_openvino(path: Path, options: dict[str, Any], precision: str, sizes: dict[str, Any]):  # noqa: ANN202
    """A predictor over the cached converted model of ``path``, built without torch and without
    reading the checkpoint (``known_weights``); None when there is none to use."""
    from ..model.families import config_from_dict
    from .backends.openvino_cache import ModelCache, entry_key
    from .known_weights import recall

    known = recall(path, options)
    if known is None:
        return None
    key, _ = entry_key(known.sha256, known.config)
    entry, _ = ModelCache().find(key)
    if entry is None:
        return None
    config = config_from_dict(known.config)
    if config.traits.temporal:
        from .backends.openvino_temporal import OpenVinoTemporalBackend as Backend
    else:
        from .backends.openvino_backend import OpenVinoBackend as Backend
    return _predictor_class(config)(config=config, backend=Backend.from_entry(entry, precision=precision), **sizes)


def default_batch(device: str) -> int:
    """Inputs per forward when --batch is not given: 4 on a GPU (keeps it busy between frames at
    a few hundred MiB more), 1 on the CPU, where a bigger batch only adds latency."""
    return 4 if device_type(device) == "cuda" else 1
