"""What every output records about the run that made it: the model, its weights' sha256, the
precision, backend and device (``model_facts``, once per run), and per output how to read the
values back (``value_metadata``). The image and video jobs add the per-output sizes.

Why: "what unit is this, is it depth or disparity, how do I get the values back from the PNG"
is the most asked question about depth maps; every output answers it itself, and names the
exact weights so it can be reproduced.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .._version import __version__
from ..model.configs import INVERSE_DEPTH as RELATIVE  # noqa: F401 - the kinds, as outputs record them
from ..model.configs import METRIC_DEPTH as METRIC
from ..model.configs import RELATIVE_DEPTH

LEVELS = {"gray16": 65535, "gray": 255, "color": 255}  # the quantised formats' top level


def model_facts(predictor, spec) -> dict:  # noqa: ANN001 - DepthPredictor, PredictorSpec
    """The run's model and runtime as plain JSON data (the sha256 is memoised per file version)."""
    from ..runtime.fingerprint import checkpoint_sha256

    config = predictor.config
    source = spec.source
    path = _local_path(source)
    facts = {
        "depthcli": __version__,
        "model": Path(source).name if path is not None and path.is_file() else str(source),
        "sha256": checkpoint_sha256(path) if path is not None else None,
        "family": config.family,
        "network": config.describe,
        "encoder": config.encoder.name,
        "kind": config.traits.kind,
    }
    if getattr(config, "version", None) is not None:
        facts["version"] = config.version
    if config.max_depth is not None:
        facts["max_depth"] = config.max_depth
    dtype = getattr(predictor, "dtype", None)
    facts.update({
        "precision": str(dtype).removeprefix("torch.") if dtype is not None else (spec.precision or "float32"),
        "backend": getattr(predictor, "backend_name", None) or getattr(spec, "backend", None) or "torch",
        "device": str(getattr(predictor, "device", spec.device)),
        "size": getattr(predictor, "size", spec.size),
        "max_side": spec.max_side,
    })
    return facts


def picture_invert(invert: bool, facts: dict | None) -> bool:
    """Whether a picture (colour, gray, gray16) maps values to brightness reversed. Pictures show
    near as bright for every model, so they look alike across families: a model whose values
    grow with distance (relative depth, metres) is drawn reversed, inverse depth as it is, and
    ``--invert`` flips either. The metadata records the resulting ``invert``."""
    far_is_larger = (facts or {}).get("kind") in (RELATIVE_DEPTH, METRIC)
    return bool(invert) != far_is_larger


def _local_path(source: str) -> Path | None:
    """The checkpoint on disk: the path given, or a registry model's cached snapshot."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    try:
        from ..hub.registry import cached_snapshot
    except ImportError:  # pragma: no cover - the hub lives elsewhere in this build
        return None
    try:
        return cached_snapshot(str(source))
    except (KeyError, OSError, ValueError):
        return None


def value_range(depth_hw: np.ndarray) -> tuple[float, float] | None:
    """The (min, max) over finite values, in float32 as ``io.render.normalize`` takes them;
    None when no value is finite."""
    d = np.asarray(depth_hw, dtype=np.float32)
    finite = d[np.isfinite(d)] if not np.isfinite(d).all() else d
    if not finite.size:
        return None
    return float(finite.min()), float(finite.max())


def value_metadata(depth_hw: np.ndarray, fmt: str, *, invert: bool = False, colormap: str | None = None,
                   value_range_used: tuple[float, float] | None = None) -> dict:
    """How to turn a pixel of a ``fmt`` output back into the model's raw value.

    ``value_range_used`` is the (lo, hi) the picture was normalised with (a video's running
    range); None means the map's own finite min..max, as the image formats use."""
    if fmt in ("npy", "exr"):
        return {"values": "raw float32 model output (NaN/inf kept)", "formula": "value = pixel"}
    levels = LEVELS[fmt]
    lo_hi = value_range_used if value_range_used is not None else value_range(depth_hw)
    lo, hi = lo_hi if lo_hi is not None else (0.0, 0.0)
    lo, hi = float(np.float32(lo)), float(np.float32(hi))
    meta = {"min": lo, "max": hi, "invert": bool(invert), "levels": levels}
    if fmt == "color":
        meta["colormap"] = colormap
    p = "p" if fmt != "color" else "p (the pixel's index in the colormap)"
    if invert:
        meta["formula"] = f"value = max - (max - min) * {p} / {levels}"
    else:
        meta["formula"] = f"value = min + (max - min) * {p} / {levels}"
    if fmt == "gray16":
        meta["precision_note"] = "rounded: within half a step, (max - min) / 131070, of the raw value"
    else:
        meta["precision_note"] = ("truncated to 8 bits: the raw value lies between this and one step, "
                                  "(max - min) / 255, above")
    if value_range_used is not None:
        meta["clipped"] = "values outside min..max were clipped to the ends"
    return meta
