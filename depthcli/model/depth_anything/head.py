"""Depth head: halve the channels, upsample to the input's pixel grid, two convolutions to one
channel. Relative models end in ReLU (affine-invariant inverse depth); V2 metric models end in
sigmoid x max_depth (metres)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEAD_HIDDEN = 32


class DepthHead(nn.Module):
    def __init__(self, features: int, max_depth: float | None = None) -> None:
        super().__init__()
        self.max_depth = max_depth
        self.conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features // 2, HEAD_HIDDEN, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(HEAD_HIDDEN, 1, kernel_size=1)

    def forward(self, fused_bchw: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
        x = self.conv1(fused_bchw)
        x = F.interpolate(x, size=out_hw, mode="bilinear", align_corners=True)
        x = self.conv3(F.relu(self.conv2(x)))
        if self.max_depth is None:
            return F.relu(x)
        return torch.sigmoid(x) * self.max_depth
