"""DPT fusion (RefineNet style): from the coarsest level down, add the skip level through a
residual conv unit, refine, upsample x2 (bilinear, align_corners=True), project with 1x1."""
from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn


class ResidualConvUnit(nn.Module):
    """x + conv(relu(conv(relu(x))))."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    def __init__(self, features: int, *, takes_skip: bool = True) -> None:
        super().__init__()
        # the coarsest block has nothing to fuse; the originals still build (and ship) its unit
        self.skip_unit = ResidualConvUnit(features) if takes_skip else None
        self.refine_unit = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None,
                size: tuple[int, int] | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.skip_unit(skip)
        x = self.refine_unit(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class Fusion(nn.Module):
    """Four fusion blocks; ``blocks[0]`` works on the finest level, ``blocks[3]`` on the coarsest."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(FusionBlock(features, takes_skip=i < 3) for i in range(4))

    def forward(self, pyramid: list[torch.Tensor], *,
                hooks: Mapping[int, Callable[[torch.Tensor], torch.Tensor]] | None = None) -> torch.Tensor:
        """``hooks[i]`` transforms block i's output before the next finer block takes it: where
        Video Depth Anything mixes frames (after blocks 3 and 2). Without hooks, the plain DPT."""
        l1, l2, l3, l4 = pyramid
        return self.fine(self.coarse(l3, l4, l2.shape[-2:], hooks=hooks), l1, l2, hooks=hooks)

    def coarse(self, l3: torch.Tensor, l4: torch.Tensor, l2_hw: tuple[int, int], *,
               hooks: Mapping[int, Callable[[torch.Tensor], torch.Tensor]] | None = None) -> torch.Tensor:
        """Blocks 3 and 2 (the coarse half, at the patch grid): the path block 1 continues, at
        the size ``l2_hw`` of level 1."""
        hooks = hooks or {}
        path = self.blocks[3](l4, size=l3.shape[-2:])
        path = hooks[3](path) if 3 in hooks else path
        path = self.blocks[2](path, l3, size=l2_hw)
        return hooks[2](path) if 2 in hooks else path

    def fine(self, path: torch.Tensor, l1: torch.Tensor, l2: torch.Tensor, *,
             hooks: Mapping[int, Callable[[torch.Tensor], torch.Tensor]] | None = None) -> torch.Tensor:
        """Blocks 1 and 0 (the fine half, at 2x and 4x the patch grid, 8x out): per image, so a
        caller may run it on a few images at a time to bound memory (Video Depth Anything's
        32-frame windows)."""
        hooks = hooks or {}
        path = self.blocks[1](path, l2, size=l1.shape[-2:])
        path = hooks[1](path) if 1 in hooks else path
        return self.blocks[0](path, l1)
