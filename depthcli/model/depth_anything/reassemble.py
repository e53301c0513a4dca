"""DPT reassembly: turn the four tapped token grids into a feature pyramid at 4x, 2x, 1x and 1/2x
of the patch grid, then bring every level to the fusion width with a 3x3 convolution.

Two keyword options serve Depth Anything 3's DualDPT head (off for V1/V2, whose results they do
not touch): ``token_norm_eps`` adds a LayerNorm on the tokens before the projections, and
``position`` is a function applied to every projected map before its resampling (DualDPT adds a
sinusoidal UV position embedding there).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn


def _resampler(level: int, channels: int) -> nn.Module:
    """Finest level first: x4 and x2 transposed convolutions, identity, stride-2 convolution."""
    if level == 0:
        return nn.ConvTranspose2d(channels, channels, kernel_size=4, stride=4)
    if level == 1:
        return nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)
    if level == 2:
        return nn.Identity()
    return nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)


class Reassemble(nn.Module):
    def __init__(self, embed_dim: int, out_channels: tuple[int, ...], features: int, *,
                 token_norm_eps: float | None = None,
                 position: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.token_norm = nn.LayerNorm(embed_dim, eps=token_norm_eps) if token_norm_eps is not None else None
        self.position = position
        self.projections = nn.ModuleList(nn.Conv2d(embed_dim, c, kernel_size=1) for c in out_channels)
        self.resamplers = nn.ModuleList(_resampler(i, c) for i, c in enumerate(out_channels))
        self.to_features = nn.ModuleList(
            nn.Conv2d(c, features, kernel_size=3, padding=1, bias=False) for c in out_channels)

    def forward(self, tokens: list[torch.Tensor], grid_h: int, grid_w: int, *,
                hooks: Mapping[int, Callable[[torch.Tensor], torch.Tensor]] | None = None,
                levels: tuple[int, ...] = (0, 1, 2, 3)) -> list[torch.Tensor]:
        """``hooks[i]`` transforms level i between its resampling and its width convolution: where
        Video Depth Anything mixes frames (levels 2 and 3). Without hooks, the plain DPT.
        ``levels``: compute only these (``tokens`` holds theirs, in order): Video Depth Anything
        runs the coarse levels over a whole window, the fine ones a few frames at a time."""
        pyramid = []
        for level, tokens_bnc in zip(levels, tokens, strict=True):
            project, resample, to_features = self.projections[level], self.resamplers[level], self.to_features[level]
            if self.token_norm is not None:
                tokens_bnc = self.token_norm(tokens_bnc)
            b, _, c = tokens_bnc.shape
            grid_bchw = project(tokens_bnc.transpose(1, 2).reshape(b, c, grid_h, grid_w))
            if self.position is not None:
                grid_bchw = self.position(grid_bchw)
            level_bchw = resample(grid_bchw)
            if hooks and level in hooks:
                level_bchw = hooks[level](level_bchw)
            pyramid.append(to_features(level_bchw))
        return pyramid
