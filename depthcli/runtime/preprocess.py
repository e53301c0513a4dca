"""Image -> normalised network input, exactly as each family's original code does it (no torch:
a cached OpenVINO model runs without importing it).

Every family's ``Traits`` says which recipe applies (``model/configs.py``):

- ``lower_bound`` (Depth Anything V1/V2 ``run.py`` / ``infer_image``, Video Depth Anything): BGR
  -> RGB, ``/ 255`` (float64 for V1/V2, float32 for VDA: ``unit_dtype``) *before* a cubic resize
  so the cubic overshoot is not clipped, the SHORTER side to ``size`` with both sides rounded to
  multiples of 14 (NumPy's round-half-even, never below ``size``), ImageNet mean/std in float64,
  float32 CHW. Resizing a uint8 image before the division is 6e-3 off, linear instead of cubic
  4e-2. VDA's clips wider than ``wide_ratio`` get its smaller size (``configs.wide_ratio_size``).
- ``upper_bound`` (Depth Anything 3's ``InputProcessor``, "upper_bound_resize"): RGB uint8, the
  LONGER side to ``size`` (cubic when enlarging, area when shrinking), then each side to the
  nearest multiple of 14 by a second small resize (cubic if either side grows, else area), then
  ``/ 255`` and ImageNet normalisation in float32 (torchvision's ToTensor + Normalize).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..model.configs import PATCH_SIZE, Traits, wide_ratio_size

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
LOWER_BOUND = Traits(family="depth_anything", kind="relative inverse depth")  # V2: the default recipe


def _round_to_multiple(x: float, minimum: int) -> int:
    """The originals' constrain_to_multiple_of(x, min_val): round, or ceil if that falls short."""
    y = int(np.round(x / PATCH_SIZE) * PATCH_SIZE)
    return y if y >= minimum else int(math.ceil(x / PATCH_SIZE) * PATCH_SIZE)


def _nearest_multiple(x: int) -> int:
    """DA3's nearest multiple of 14 (ties go up), never below one patch (the original would
    make a side of 1 pixel there and fail)."""
    down = x // PATCH_SIZE * PATCH_SIZE
    up = down + PATCH_SIZE
    return max(PATCH_SIZE, up if abs(up - x) <= abs(x - down) else down)


def _upper_bound_sizes(h: int, w: int, size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """DA3: ((h, w) after the longest-side resize, (h, w) after rounding to multiples of 14)."""
    longest = max(h, w)
    if longest != size:
        scale = size / float(longest)
        h, w = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    return (h, w), (_nearest_multiple(h), _nearest_multiple(w))


def processed_size(h: int, w: int, size: int | None = None, max_side: int | None = None,
                   traits: Traits = LOWER_BOUND) -> tuple[int, int]:
    """(height, width) the network sees for an h x w image.

    ``size`` defaults to the family's (518, or 504 for DA3). ``max_side`` caps the longer side
    (thin panoramas otherwise blow up 2-3x), keeping the aspect ratio and multiples of 14; for
    ``upper_bound`` families it simply lowers ``size``, which already bounds the longer side.
    """
    size = traits.default_size if size is None else size
    if size < PATCH_SIZE:
        raise ValueError(f"--size must be at least {PATCH_SIZE}, got {size}")
    if max_side is not None and max_side < PATCH_SIZE:
        raise ValueError(f"--max-side must be at least {PATCH_SIZE}, got {max_side}")
    if traits.resize == "upper_bound":
        return _upper_bound_sizes(h, w, min(size, max_side or size))[1]
    size = max(PATCH_SIZE, wide_ratio_size(h, w, size, traits.wide_ratio))
    scale = max(size / h, size / w)
    nh, nw = _round_to_multiple(scale * h, size), _round_to_multiple(scale * w, size)
    if max_side is not None and max(nh, nw) > max_side:
        # integer arithmetic: the long side lands exactly on the cap's multiple of 14, the short
        # one follows the aspect ratio (float scaling can fall one patch short)
        long_side = max_side // PATCH_SIZE * PATCH_SIZE
        short_side = max(PATCH_SIZE, max_side * min(h, w) // max(h, w) // PATCH_SIZE * PATCH_SIZE)
        nh, nw = (long_side, short_side) if h >= w else (short_side, long_side)
    return nh, nw


def to_rgb(image_bgr: np.ndarray) -> np.ndarray:
    """BGR (or gray) as OpenCV reads it -> RGB, dtype kept."""
    if image_bgr.ndim == 2:
        image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)


def to_unit_rgb(image_bgr: np.ndarray, dtype: str = "float64") -> np.ndarray:
    """BGR uint8/uint16 (or float in [0, 1]) -> RGB in [0, 1], as the originals' ``/ 255``."""
    rgb = to_rgb(image_bgr)
    if rgb.dtype == np.uint8:
        return rgb / 255.0 if dtype == "float64" else rgb.astype(np.float32) / np.float32(255.0)
    if rgb.dtype == np.uint16:
        return rgb / 65535.0 if dtype == "float64" else rgb.astype(np.float32) / np.float32(65535.0)
    return rgb.astype(dtype)


def to_rgb8(image_bgr: np.ndarray) -> np.ndarray:
    """RGB uint8, the input of DA3's recipe (it reads photos through PIL as 8-bit RGB): 16-bit
    images are rounded to 8 bits, float images in [0, 1] scaled and rounded."""
    rgb = to_rgb(image_bgr)
    if rgb.dtype == np.uint8:
        return rgb
    if rgb.dtype == np.uint16:
        return ((rgb.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return np.clip(np.rint(rgb.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def _normalised_chw(rgb: np.ndarray) -> np.ndarray:
    """The originals' float64 ``(x - mean) / std``, then float32 CHW: one plane at a time gives
    the same bits 4x faster than broadcasting over the trailing channel axis."""
    nh, nw = rgb.shape[:2]
    chw = np.empty((3, nh, nw), np.float32)
    for c in range(3):
        chw[c] = (rgb[:, :, c] - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
    return chw


def _upper_bound_input(image_bgr: np.ndarray, size: int) -> np.ndarray:
    rgb = to_rgb8(image_bgr)
    h, w = rgb.shape[:2]
    (h1, w1), (h2, w2) = _upper_bound_sizes(h, w, size)
    if (h1, w1) != (h, w):
        grow = size / float(max(h, w)) > 1.0
        rgb = cv2.resize(rgb, (w1, h1), interpolation=cv2.INTER_CUBIC if grow else cv2.INTER_AREA)
    if (h2, w2) != (h1, w1):
        grow = h2 > h1 or w2 > w1
        rgb = cv2.resize(rgb, (w2, h2), interpolation=cv2.INTER_CUBIC if grow else cv2.INTER_AREA)
    # torchvision: ToTensor (float32 / 255) then Normalize, all in float32
    chw = np.empty((3, h2, w2), np.float32)
    for c in range(3):
        unit = rgb[:, :, c].astype(np.float32) / np.float32(255.0)
        chw[c] = (unit - np.float32(IMAGENET_MEAN[c])) / np.float32(IMAGENET_STD[c])
    return chw


def preprocess(image_bgr: np.ndarray, size: int | None = None, max_side: int | None = None,
               traits: Traits = LOWER_BOUND) -> np.ndarray:
    """An HxWx3 BGR image -> the (1, 3, H', W') float32 array the network takes."""
    size = traits.default_size if size is None else size
    if traits.resize == "upper_bound":
        processed_size(*image_bgr.shape[:2], size, max_side, traits)  # validates size / max_side
        return _upper_bound_input(image_bgr, min(size, max_side or size))[None]
    h, w = image_bgr.shape[:2]
    nh, nw = processed_size(h, w, size, max_side, traits)
    rgb = cv2.resize(to_unit_rgb(image_bgr, traits.unit_dtype), (nw, nh), interpolation=cv2.INTER_CUBIC)
    return _normalised_chw(rgb)[None]
