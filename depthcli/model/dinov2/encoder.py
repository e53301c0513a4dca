"""DINOv2 ViT encoder: patch embedding -> [class token] + position encoding -> blocks -> norm.

Returns the normalised patch tokens of the tapped blocks (class token dropped), which is what
both Depth-Anything versions feed their DPT head.
"""
from __future__ import annotations

import torch
from torch import nn

from ..configs import PATCH_SIZE, EncoderConfig
from .block import LAYER_NORM_EPS, TransformerBlock
from .patch_embed import PatchEmbedding
from .position_encoding import PositionEncoding


class DinoV2Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.patch_embed = PatchEmbedding(cfg.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.position_encoding = PositionEncoding(cfg.embed_dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=LAYER_NORM_EPS)

    def forward(self, image_bchw: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
        grid_h, grid_w = image_bchw.shape[-2] // PATCH_SIZE, image_bchw.shape[-1] // PATCH_SIZE
        patches_bnc = self.patch_embed(image_bchw)
        cls_b1c = self.cls_token.expand(patches_bnc.shape[0], -1, -1).to(patches_bnc.dtype)
        tokens_bnc = torch.cat((cls_b1c, patches_bnc), dim=1)
        tokens_bnc = tokens_bnc + self.position_encoding(grid_h, grid_w, tokens_bnc.dtype)
        tapped = []
        for i, block in enumerate(self.blocks[: max(taps) + 1]):
            tokens_bnc = block(tokens_bnc)
            if i in taps:
                tapped.append(self.norm(tokens_bnc)[:, 1:])
        return tapped
