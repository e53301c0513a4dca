"""What the original does to Depth Anything 3's raw outputs after the network, in NumPy (no torch:
the runtime applies it to one image's maps, on any backend).

- ``fill_sky``: DA3MONO / DA3METRIC (``DepthAnything3Net._process_mono_sky_estimation``): pixels
  whose sky score is not below 0.3 get the 0.99 quantile of the other pixels' depth, when both
  sets have more than 10 pixels;
- ``metric_scale``: DA3METRIC's output to metres, ``depth * (focal_px / 300)`` with the focal
  length in pixels at the network input (``utils.alignment.apply_metric_scaling``).

Both work on maps at the network resolution, before the upsample to the photo's size.
"""
from __future__ import annotations

import numpy as np

from .config import FOCAL_DIVISOR

SKY_THRESHOLD = 0.3  # compute_sky_mask: non-sky = score < 0.3
MIN_PIXELS = 10  # fill only when sky and non-sky each have MORE than this many pixels
SKY_QUANTILE = 0.99


def sky_mask(sky_hw: np.ndarray) -> np.ndarray:
    """True where the sky score is NOT below the threshold (NaN counts as sky, as in the original)."""
    return ~(np.asarray(sky_hw) < SKY_THRESHOLD)


def fill_sky(depth_hw: np.ndarray, sky_hw: np.ndarray) -> np.ndarray:
    """Depth with the sky set to the 0.99 quantile of the non-sky depth (one image's maps).

    Returns ``depth_hw`` itself (not a copy) when nothing is filled; never modifies it. The
    quantile is exact, over all non-sky pixels, with torch.quantile's arithmetic (linear
    interpolation, rank and weight in the depth's float precision, torch.lerp's fused
    multiply-add), so for float32 depth it equals the original's value bit for bit. The
    original differs only above 100,000 non-sky pixels, where it takes the quantile of a random
    subsample of 100,000 (a different value on every run); the original also applies the rule
    to its whole forward batch at once, depthcli to each image.
    """
    depth_hw = np.asarray(depth_hw)
    sky = sky_mask(sky_hw)
    if sky.shape != depth_hw.shape:
        raise ValueError(f"sky map {sky.shape} and depth map {depth_hw.shape} differ in shape")
    n_sky = int(sky.sum())
    if n_sky <= MIN_PIXELS or sky.size - n_sky <= MIN_PIXELS:
        return depth_hw
    out = depth_hw.copy()
    out[sky] = _torch_quantile(depth_hw[~sky], SKY_QUANTILE)
    return out


def metric_scale(depth_hw: np.ndarray, focal_px: float) -> np.ndarray:
    """DA3METRIC's output in metres: ``depth * (focal_px / 300)``, focal_px at the network input
    (the original takes the mean of fx and fy)."""
    depth_hw = np.asarray(depth_hw)
    factor = focal_px / FOCAL_DIVISOR
    return depth_hw * (depth_hw.dtype.type(factor) if depth_hw.dtype.kind == "f" else factor)


def _torch_quantile(values: np.ndarray, q: float) -> np.floating:
    """``torch.quantile(values, q)`` (linear interpolation) on a 1-D array, same arithmetic."""
    ftype = values.dtype.type if values.dtype.kind == "f" else np.float64
    values = values.astype(ftype, copy=False)
    if np.isnan(values).any():
        return ftype(np.nan)
    n = values.size
    rank = ftype(q) * ftype(n - 1)  # in the data's precision, as torch does
    below = int(rank)
    above = min(int(np.ceil(rank)), n - 1)
    if above == below:
        lo = hi = np.partition(values, below)[below]
    else:
        part = np.partition(values, (below, above))
        lo, hi = part[below], part[above]
    weight, diff = rank - ftype(below), hi - lo
    # torch.lerp, a fused multiply-add: start + w * (end - start) for w < 0.5, else
    # end - (end - start) * (1 - w), rounded once (float32 data: exact product in float64)
    wide = np.float64 if np.finfo(ftype).bits <= 32 else np.longdouble
    if weight < 0.5:
        return ftype(wide(lo) + wide(weight) * wide(diff))
    return ftype(wide(hi) - wide(diff) * wide(ftype(1) - weight))
