"""Learned position encoding, resized to the patch grid exactly as the original DINOv2 does it.

The table is learned for a 37x37 grid (518 px) plus the class token. For any other grid the
original code resizes it bicubically in float32 with ``scale_factor=(grid + 0.1) / 37`` (the
offset dodges a rounding bug in the output size). ``transformers`` passes ``size=grid`` instead,
which samples slightly different source coordinates; we follow the original.

Resizing costs as much as a transformer block at video rates, so results are cached per grid,
dtype and device. The cache is keyed on the table's storage and version counter too, so new
weights (load_state_dict, in-place edits) never hit a stale entry.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import NATIVE_GRID

INTERPOLATE_OFFSET = 0.1


class PositionEncoding(nn.Module):
    def __init__(self, embed_dim: int, grid: int = NATIVE_GRID) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(1, grid * grid + 1, embed_dim))
        self._cache: dict[tuple, torch.Tensor] = {}

    @property
    def grid(self) -> int:
        return math.isqrt(self.table.shape[1] - 1)

    def forward(self, grid_h: int, grid_w: int, dtype: torch.dtype) -> torch.Tensor:
        """The (1, 1 + grid_h*grid_w, C) encoding to add to [class token, patch tokens]."""
        if torch.is_grad_enabled() and self.table.requires_grad:
            return self._resize(grid_h, grid_w, dtype)  # training: keep the graph, cache nothing
        # tensors made under inference_mode have no version counter (and cannot be edited
        # in place outside it); load_state_dict and .to() clear the cache in any case
        version = 0 if self.table.is_inference() else self.table._version
        key = (grid_h, grid_w, dtype, self.table.device, self.table.data_ptr(), version)
        if key not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[4:] == key[4:]}  # drop stale
            self._cache[key] = self._resize(grid_h, grid_w, dtype).detach()
        return self._cache[key]

    def _resize(self, grid_h: int, grid_w: int, dtype: torch.dtype) -> torch.Tensor:
        n = self.table.shape[1] - 1
        # the original skips the resize only for a square input with the native token count
        if grid_h * grid_w == n and grid_h == grid_w:
            return self.table.to(dtype)
        table = self.table.float()
        cls_pos, patch_pos = table[:, :1], table[:, 1:]
        side = math.sqrt(n)
        grid = patch_pos.reshape(1, int(side), int(side), -1).permute(0, 3, 1, 2)
        scale = ((grid_h + INTERPOLATE_OFFSET) / side, (grid_w + INTERPOLATE_OFFSET) / side)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", align_corners=False)
        if grid.shape[-2:] != (grid_h, grid_w):
            raise ValueError(f"position encoding resized to {tuple(grid.shape[-2:])}, "
                             f"expected {(grid_h, grid_w)}")
        patch_pos = grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat((cls_pos, patch_pos), dim=1).to(dtype)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self._cache.clear()
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202 - .to()/.half() replace the table
        self._cache.clear()
        return super()._apply(fn, recurse)
