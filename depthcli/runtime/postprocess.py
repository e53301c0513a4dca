"""Network outputs -> depth at the image's own resolution, as each original does it (NumPy, no
torch: the cached OpenVINO path never imports it).

In order, for one image:
1. DA3 models with a sky head (``Traits.sky``): sky pixels (sky output >= 0.3) get the 0.99
   quantile of the other pixels' depth, when each side has more than 10 pixels (``fill_sky``,
   ``model/depth_anything_3/postprocess.py``). The original takes the quantile over a random
   subsample of 100k pixels on large inputs; depthcli takes the exact quantile over all of them
   (deterministic), so the two agree wherever the original does not subsample.
2. DA3METRIC (``Traits.focal_divisor``): metres = output * focal_px / 300, the focal length in
   pixels at the network input (``metric_scale``).
3. A bilinear upsample to the image size (``upsample_bilinear``), ``align_corners=False`` for V1
   and ``True`` for the others. Mixing them up is ~1e-2 off.

``upsample_bilinear`` computes what ``torch.nn.functional.interpolate(mode="bilinear")`` computes
on the CPU, in the same float32 operations (the same weights, the width blended first), so the
torch and OpenVINO paths give the same depth to float rounding.
"""
from __future__ import annotations

import numpy as np

from ..model.configs import Traits
from ..model.depth_anything_3.postprocess import fill_sky, metric_scale  # the rules of the sky and focal traits


def _linear_taps(in_size: int, out_size: int, align_corners: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index0, index1, lambda) per output position, as torch's upsample_bilinear2d on the CPU
    (its scale is a float32 division, its source coordinate float32 arithmetic)."""
    i = np.arange(out_size, dtype=np.float32)
    if align_corners:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1) if out_size > 1 else np.float32(0.0)
        real = scale * i
    else:
        scale = np.float32(in_size) / np.float32(out_size)
        # torch's CPU build contracts scale * (i + 0.5) - 0.5 into one fused multiply-add:
        # exact in float64, rounded once to float32
        fused = scale.astype(np.float64) * (i + np.float32(0.5)).astype(np.float64) - 0.5
        real = np.maximum(fused.astype(np.float32), np.float32(0.0))
    index0 = np.minimum(np.floor(real).astype(np.int64), in_size - 1)
    lam = np.clip(real - index0.astype(np.float32), np.float32(0.0), np.float32(1.0)).astype(np.float32)
    index1 = index0 + (index0 < in_size - 1)
    return index0, index1, lam


def upsample_bilinear(depth_hw: np.ndarray, out_hw: tuple[int, int], align_corners: bool) -> np.ndarray:
    """(H', W') -> (h, w) float32, bilinear: rows blended along the width, then along the height."""
    src = np.asarray(depth_hw, dtype=np.float32)
    (in_h, in_w), (out_h, out_w) = src.shape, out_hw
    if (in_h, in_w) == (out_h, out_w):
        return src.copy()
    x0, x1, lx = _linear_taps(in_w, out_w, align_corners)
    y0, y1, ly = _linear_taps(in_h, out_h, align_corners)
    one = np.float32(1.0)
    rows = np.unique(np.concatenate((y0, y1)))  # only the source rows the output reads
    blended = np.zeros((in_h, out_w), np.float32)
    part = src[rows]
    blended[rows] = part[:, x0] * (one - lx) + part[:, x1] * lx
    return blended[y0] * (one - ly)[:, None] + blended[y1] * ly[:, None]


def network_focal(image_focal_px: float, image_w: int, network_w: int) -> float:
    """A focal length in pixels of the photo, at the network input's width."""
    return image_focal_px * network_w / image_w


def network_depth(outputs: dict[str, np.ndarray], traits: Traits, image_w: int,
                  focal_px: float | None = None) -> np.ndarray:
    """Steps 1 and 2 for one image's network outputs ({name: (H', W')}): its float32 depth at
    the network resolution. ``focal_px``: the photo's focal length in pixels (DA3METRIC), on a
    photo ``image_w`` wide (scaled to the network here)."""
    depth = np.asarray(outputs["depth"], dtype=np.float32)
    if traits.sky and "sky" in outputs:
        depth = fill_sky(depth, np.asarray(outputs["sky"]))
    if traits.focal_divisor is not None:
        if focal_px is None:
            raise ValueError("this metric model needs the camera's focal length")
        depth = metric_scale(depth, network_focal(focal_px, image_w, depth.shape[1]))
    return depth


def finish(outputs: dict[str, np.ndarray], traits: Traits, image_hw: tuple[int, int],
           focal_px: float | None = None) -> np.ndarray:
    """One image's network outputs -> its float32 depth at ``image_hw`` (all three steps)."""
    return upsample_bilinear(network_depth(outputs, traits, image_hw[1], focal_px), image_hw, traits.align_corners)
