"""Turning a depth map (HxW float32, relative inverse depth) into pictures.

``to_gray8`` and ``to_color`` reproduce the original Depth-Anything scripts bit for bit:
``(d - d.min()) / (d.max() - d.min()) * 255.0`` in float32, truncated with ``astype(uint8)``,
then ``cv2.applyColorMap``. Everything else (ranges, inversion, NaN handling) only departs
from that where the originals would divide by zero or propagate NaN.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

COLORMAPS: dict[str, int] = {
    name[len("COLORMAP_") :].lower(): getattr(cv2, name)
    for name in sorted(dir(cv2))
    if name.startswith("COLORMAP_")
}


def normalize(depth_hw_f32: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Map depth to float32 in [0, 1]: min-max over the finite values when ``value_range`` is
    None, else linearly with clipping to ``(lo, hi)``. A constant map, an empty range or an
    all-NaN map gives zeros; NaN and -inf pixels map to 0, +inf to 1."""
    d = np.asarray(depth_hw_f32, dtype=np.float32)
    finite = np.isfinite(d)
    all_finite = bool(finite.all())
    if value_range is None:
        if not (all_finite or finite.any()):
            return np.zeros(d.shape, np.float32)
        values = d if all_finite else d[finite]
        lo, hi = values.min(), values.max()
    else:
        lo, hi = np.float32(value_range[0]), np.float32(value_range[1])
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"value range must be finite, got {value_range}")
    span = hi - lo  # float32, exactly like the originals' d.max() - d.min()
    if not span > 0:
        return np.zeros(d.shape, np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        out = (d - lo) / span
    if value_range is not None or not all_finite:
        out = np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)
        np.clip(out, 0.0, 1.0, out=out)
    return out


def to_gray8(
    depth_hw_f32: np.ndarray, value_range: tuple[float, float] | None = None, invert: bool = False
) -> np.ndarray:
    """HxW uint8, near = bright (the model predicts inverse depth); ``invert`` flips it."""
    gray = (normalize(depth_hw_f32, value_range) * 255.0).astype(np.uint8)
    return 255 - gray if invert else gray


def to_gray16(
    depth_hw_f32: np.ndarray, value_range: tuple[float, float] | None = None, invert: bool = False
) -> np.ndarray:
    """HxW uint16 over 0..65535 (rounded): 256x finer steps than 8-bit for further processing."""
    gray = np.rint(normalize(depth_hw_f32, value_range) * 65535.0).astype(np.uint16)
    return 65535 - gray if invert else gray


def to_color(
    depth_hw_f32: np.ndarray,
    colormap: str | int = "inferno",
    value_range: tuple[float, float] | None = None,
    invert: bool = False,
) -> np.ndarray:
    """HxWx3 BGR uint8: ``cv2.applyColorMap`` on the 8-bit map, as the original scripts do."""
    return cv2.applyColorMap(to_gray8(depth_hw_f32, value_range, invert), colormap_id(colormap))


def colormap_id(colormap: str | int) -> int:
    """OpenCV's constant for a colormap name (case-insensitive); a clear error for typos."""
    if isinstance(colormap, (int, np.integer)):
        if int(colormap) not in COLORMAPS.values():
            raise ValueError(f"unknown colormap id {colormap}")
        return int(colormap)
    try:
        return COLORMAPS[colormap.lower()]
    except KeyError:
        raise ValueError(f"unknown colormap {colormap!r}; choose one of {', '.join(COLORMAPS)}") from None


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any picture-like array as displayable HxWx3 uint8: gray expanded, alpha dropped, 16-bit
    scaled by 1/257 (rounded), float depth min-max normalised."""
    image = np.asarray(image)
    if image.dtype == np.uint16:
        image = np.rint(image / 257.0).astype(np.uint8)
    elif image.dtype.kind == "f":
        image = to_gray8(image if image.ndim == 2 else image[..., 0])
    elif image.dtype != np.uint8:
        raise ValueError(f"cannot display {image.dtype} pixels")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"not an image shape: {image.shape}")


def side_by_side(image_bgr: np.ndarray, depth_bgr: np.ndarray) -> np.ndarray:
    """Input left, depth right, no gap, at the input's size (depth resized if it differs)."""
    left = to_bgr8(image_bgr)
    right = to_bgr8(depth_bgr)
    height, width = left.shape[:2]
    if right.shape[:2] != (height, width):
        right = cv2.resize(right, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.hstack([left, right])


class RunningRange:
    """Temporally stable (lo, hi) for normalising video frames, so brightness does not flicker
    when per-frame min/max jump (a hand entering the frame, one noisy pixel).

    Each frame's robust range is its ``low_pct``/``high_pct`` percentiles (1st/99th by default:
    a few outlier pixels cannot stretch it); these are smoothed with an exponential moving
    average, ``new = momentum * old + (1 - momentum) * frame``. ``momentum=0.9`` settles within
    ~20 frames (under a second at 30 fps) after a real scene change. Percentiles are taken on
    at most ~``sample_pixels`` pixels (a strided subsample) to stay cheap on 4K frames.
    """

    def __init__(
        self,
        low_pct: float = 1.0,
        high_pct: float = 99.0,
        momentum: float = 0.9,
        sample_pixels: int = 250_000,
    ) -> None:
        if not 0.0 <= low_pct < high_pct <= 100.0:
            raise ValueError("need 0 <= low_pct < high_pct <= 100")
        if not 0.0 <= momentum < 1.0:
            raise ValueError("momentum must be in [0, 1)")
        self.low_pct, self.high_pct = low_pct, high_pct
        self.momentum = momentum
        self.sample_pixels = sample_pixels
        self.range: tuple[float, float] | None = None

    def reset(self) -> None:
        """Forget the history (a scene cut, or the user asked for it)."""
        self.range = None

    def update(self, depth_hw_f32: np.ndarray) -> tuple[float, float]:
        """Fold in one frame and return the smoothed (lo, hi); an all-NaN frame changes nothing."""
        d = np.asarray(depth_hw_f32, dtype=np.float32)
        if d.size > self.sample_pixels and d.ndim == 2:
            step = math.ceil(math.sqrt(d.size / self.sample_pixels))
            d = d[::step, ::step]
        d = d[np.isfinite(d)]
        if d.size:
            lo, hi = (float(v) for v in np.percentile(d, [self.low_pct, self.high_pct]))
            if self.range is None:
                self.range = (lo, hi)
            else:
                m = self.momentum
                self.range = (m * self.range[0] + (1 - m) * lo, m * self.range[1] + (1 - m) * hi)
        return self.range if self.range is not None else (0.0, 0.0)
