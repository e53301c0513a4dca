"""The learned position encoding resized to a patch grid, in NumPy (no torch).

The OpenVINO graph takes the resized table as an input (``backends/openvino_graph.py``), so a
cached model needs this for every new grid without importing torch. It computes what
``model/dinov2/position_encoding.py`` computes: the original DINOv2 resize, bicubic (A = -0.75,
borders clamped) in float32 with ``scale_factor = (grid + 0.1) / 37``, the source coordinate
``(i + 0.5) / scale_factor - 0.5`` (the scale is ``1 / scale_factor`` rounded to float32, as
torch's CPU kernel takes it), the width interpolated first within each of the four rows, then
the height. Equal to the torch resize to ~2e-7 (float rounding), far below the 1e-6 bar.
"""
from __future__ import annotations

import math

import numpy as np

INTERPOLATE_OFFSET = 0.1  # the original's offset that dodges a rounding bug in the output size
CUBIC_A = -0.75


def _fma(a: np.ndarray | np.float32, b: np.ndarray | np.float32, c: np.ndarray | np.float32) -> np.ndarray:
    """a * b + c rounded once to float32, as the fused multiply-adds torch's CPU build contracts
    these expressions into (emulated in float64; without it the resize is ~2e-6 off, with it
    ~2e-7)."""
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(np.float32)


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """The four cubic-convolution weights for fractional offsets ``t`` (float32), shape (n, 4)."""
    a = np.float32(CUBIC_A)
    one = np.float32(1.0)

    def near(x: np.ndarray) -> np.ndarray:  # |x| <= 1: ((a + 2) x - (a + 3)) x x + 1
        return _fma(_fma(a + np.float32(2.0), x, -(a + np.float32(3.0))) * x, x, one)

    def far(x: np.ndarray) -> np.ndarray:  # 1 < |x| < 2: ((a x - 5a) x + 8a) x - 4a
        return _fma(_fma(_fma(a, x, -np.float32(5.0) * a), x, np.float32(8.0) * a), x, -np.float32(4.0) * a)

    return np.stack([far(t + one), near(t), near(one - t), far((one - t) + one)], axis=-1).astype(np.float32)


def _taps(in_size: int, out_size: int, scale_factor: float) -> tuple[np.ndarray, np.ndarray]:
    """(source indices (out, 4), weights (out, 4)) along one axis."""
    scale = np.float32(1.0 / scale_factor)
    i = np.arange(out_size, dtype=np.float32)
    real = _fma(scale, i + np.float32(0.5), np.float32(-0.5))
    base = np.floor(real)
    weights = _cubic_weights(np.clip(real - base, 0.0, 1.0).astype(np.float32))
    index = np.clip(base.astype(np.int64)[:, None] + np.arange(-1, 3)[None, :], 0, in_size - 1)
    return index, weights


def resize_position_table(table_1nc: np.ndarray, grid_h: int, grid_w: int) -> np.ndarray:
    """(1, 1 + n*n, C) learned table -> the (1, 1 + grid_h*grid_w, C) float32 encoding."""
    table = np.asarray(table_1nc, dtype=np.float32)
    n = table.shape[1] - 1
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"position table of {n} patches is not square")
    if grid_h * grid_w == n and grid_h == grid_w:  # the original's one skipped resize
        return table.copy()
    cls_1c, grid_ssc = table[:, :1], table[0, 1:].reshape(side, side, -1)
    rows, wy = _taps(side, grid_h, (grid_h + INTERPOLATE_OFFSET) / side)
    cols, wx = _taps(side, grid_w, (grid_w + INTERPOLATE_OFFSET) / side)
    # width first: (side, grid_w, C) = sum_k grid[:, cols[:, k]] * wx[:, k]
    along_w = grid_ssc[:, cols[:, 0]] * wx[None, :, 0, None]
    for k in range(1, 4):
        along_w = along_w + grid_ssc[:, cols[:, k]] * wx[None, :, k, None]
    out = along_w[rows[:, 0]] * wy[:, 0, None, None]
    for k in range(1, 4):
        out = out + along_w[rows[:, k]] * wy[:, k, None, None]
    patch_1nc = out.reshape(1, grid_h * grid_w, -1).astype(np.float32)
    return np.concatenate((cls_1c, patch_1nc), axis=1)


class PositionCache:
    """The resized encodings of one table, computed once per grid (a video or a folder of one
    size asks for the same grid at every frame)."""

    def __init__(self, table_1nc: np.ndarray) -> None:
        self.table = table_1nc
        self._by_grid: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, grid_h: int, grid_w: int) -> np.ndarray:
        key = (grid_h, grid_w)
        if key not in self._by_grid:
            self._by_grid[key] = resize_position_table(self.table, grid_h, grid_w)
        return self._by_grid[key]
