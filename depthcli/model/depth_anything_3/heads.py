"""Depth Anything 3's output heads: what follows the shared DPT reassembly and fusion.

Both halve the fused features with a 3x3 convolution, upsample them to the input's pixel grid
(bilinear, align_corners=True), then run a branch of 3x3 conv -> ReLU -> 1x1 conv:

- ``DPTHead`` (DA3MONO / DA3METRIC): a depth branch through ``exp`` and, with ``sky``, a sky
  branch through ReLU on the same upsampled features;
- ``DualDPTHead`` (DA3-SMALL / DA3-BASE): adds the UV position embedding after the upsample;
  its branch has ``channels`` outputs (depth, confidence) of which depth is ``exp`` of the
  first. The original's auxiliary (ray) branch and the confidence are not depth: not built.

Reassembly (``depth_anything/reassemble.py``) and fusion (``depth_anything/fusion.py``) are V2's
modules: the math is the same (DualDPT turns on their token LayerNorm and UV embedding options).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .uv_position import add_uv_position

HEAD_HIDDEN = 32


class OutputBranch(nn.Module):
    """3x3 conv to 32 channels -> ReLU -> 1x1 conv to ``channels``: logits."""

    def __init__(self, in_channels: int, channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, HEAD_HIDDEN, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(HEAD_HIDDEN, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x)))


def _halve_and_upsample(conv1: nn.Conv2d, fused_bchw: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(conv1(fused_bchw), size=out_hw, mode="bilinear", align_corners=True)


class DPTHead(nn.Module):
    def __init__(self, features: int, *, sky: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
        self.depth = OutputBranch(features // 2)
        self.sky = OutputBranch(features // 2) if sky else None

    def forward(self, fused_bchw: torch.Tensor, out_hw: tuple[int, int]
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = _halve_and_upsample(self.conv1, fused_bchw, out_hw)
        depth_bhw = torch.exp(self.depth(x)).squeeze(1)
        if self.sky is None:
            return depth_bhw
        return depth_bhw, F.relu(self.sky(x)).squeeze(1)


class DualDPTHead(nn.Module):
    def __init__(self, features: int, *, channels: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
        self.depth = OutputBranch(features // 2, channels)

    def forward(self, fused_bchw: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
        x = add_uv_position(_halve_and_upsample(self.conv1, fused_bchw, out_hw))
        return torch.exp(self.depth(x)[:, 0])
