"""Depth-Anything: DINOv2 encoder -> DPT reassemble -> fusion -> depth head."""
from __future__ import annotations

import torch
from torch import nn

from ..configs import PATCH_SIZE, ModelConfig
from ..dinov2 import DinoV2Encoder
from .fusion import Fusion
from .head import DepthHead
from .reassemble import Reassemble


class DepthAnything(nn.Module):
    """``forward`` takes a normalised (B, 3, H, W) batch and returns (B, H, W) depth, as the
    original ``forward`` of the matching version does."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        enc = config.encoder
        self.config = config
        self.encoder = DinoV2Encoder(enc)
        self.reassemble = Reassemble(enc.embed_dim, enc.out_channels, enc.features)
        self.fusion = Fusion(enc.features)
        self.head = DepthHead(enc.features, config.max_depth)

    def forward(self, image_bchw: torch.Tensor) -> torch.Tensor:
        h, w = image_bchw.shape[-2:]
        grid_h, grid_w = h // PATCH_SIZE, w // PATCH_SIZE
        tokens = self.encoder(image_bchw, self.config.taps)
        pyramid = self.reassemble(tokens, grid_h, grid_w)
        # V1 then resizes to (h, w): a no-op, since the patch embedding takes multiples of 14 only
        return self.head(self.fusion(pyramid), (h, w)).squeeze(1)
