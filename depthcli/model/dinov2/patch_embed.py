"""Patch embedding: cut the image into 14x14 patches and project each to one token."""
from __future__ import annotations

import torch
from torch import nn

from ..configs import PATCH_SIZE


class PatchEmbedding(nn.Module):
    def __init__(self, embed_dim: int, patch_size: int = PATCH_SIZE, in_chans: int = 3) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, image_bchw: torch.Tensor) -> torch.Tensor:
        h, w = image_bchw.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"input {h}x{w} is not a multiple of the {self.patch_size}-pixel patch")
        return self.proj(image_bchw).flatten(2).transpose(1, 2)  # tokens_bnc
