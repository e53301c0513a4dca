"""Image -> normalised network input, exactly as the original run.py / infer_image do it.

The originals: BGR->RGB, divide by 255 in float64, resize so the SHORTER side reaches ``size``
(both sides rounded to multiples of 14 with NumPy's round-half-even, never below ``size``) with
cubic interpolation on the float image, ImageNet mean/std, float32 CHW. Resizing a uint8 image
before the division clips cubic overshoot (6e-3 off); linear instead of cubic is 4e-2 off.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from ..model.configs import PATCH_SIZE
from .spec import DEFAULT_SIZE

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def _round_to_multiple(x: float, minimum: int) -> int:
    """The originals' constrain_to_multiple_of(x, min_val): round, or ceil if that falls short."""
    y = int(np.round(x / PATCH_SIZE) * PATCH_SIZE)
    return y if y >= minimum else int(math.ceil(x / PATCH_SIZE) * PATCH_SIZE)


def processed_size(h: int, w: int, size: int = DEFAULT_SIZE, max_side: int | None = None) -> tuple[int, int]:
    """(height, width) the network sees for an h x w image.

    ``max_side`` caps the longer side (thin panoramas otherwise blow up 2-3x), keeping the aspect
    ratio and multiples of 14; without it the result is the originals' lower-bound resize.
    """
    if size < PATCH_SIZE:
        raise ValueError(f"--size must be at least {PATCH_SIZE}, got {size}")
    scale = max(size / h, size / w)
    nh, nw = _round_to_multiple(scale * h, size), _round_to_multiple(scale * w, size)
    if max_side is not None and max(nh, nw) > max_side:
        if max_side < PATCH_SIZE:
            raise ValueError(f"--max-side must be at least {PATCH_SIZE}, got {max_side}")
        # integer arithmetic: the long side lands exactly on the cap's multiple of 14, the short
        # one follows the aspect ratio (float scaling can fall one patch short)
        long_side = max_side // PATCH_SIZE * PATCH_SIZE
        short_side = max(PATCH_SIZE, max_side * min(h, w) // max(h, w) // PATCH_SIZE * PATCH_SIZE)
        nh, nw = (long_side, short_side) if h >= w else (short_side, long_side)
    return nh, nw


def to_unit_rgb(image_bgr: np.ndarray) -> np.ndarray:
    """BGR uint8/uint16 (or float in [0, 1]) -> RGB float64 in [0, 1], as the originals' /255."""
    if image_bgr.ndim == 2:
        image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    if rgb.dtype == np.uint8:
        return rgb / 255.0
    if rgb.dtype == np.uint16:
        return rgb / 65535.0
    return rgb.astype(np.float64)


def preprocess(image_bgr: np.ndarray, size: int = DEFAULT_SIZE, max_side: int | None = None) -> torch.Tensor:
    """An HxWx3 BGR image -> the (1, 3, H', W') float32 tensor the network takes."""
    h, w = image_bgr.shape[:2]
    nh, nw = processed_size(h, w, size, max_side)
    rgb = cv2.resize(to_unit_rgb(image_bgr), (nw, nh), interpolation=cv2.INTER_CUBIC)
    # the originals' float64 (x - mean) / std, then float32 CHW: one plane at a time gives the
    # same bits 4x faster than broadcasting over the trailing channel axis
    chw = np.empty((3, nh, nw), np.float32)
    for c in range(3):
        chw[c] = (rgb[:, :, c] - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
    return torch.from_numpy(chw).unsqueeze(0)
