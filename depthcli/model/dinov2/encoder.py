"""DINOv2 ViT encoder: patch embedding -> [class token] + position encoding -> blocks -> norm.

Returns the normalised patch tokens of the tapped blocks (class token dropped), which is what
both Depth-Anything versions feed their DPT head.

Depth Anything 3 turns on, by keyword (all off by default, which is DINOv2 as V1/V2 use it):

- ``qk_norm_from`` / ``rope_from``: blocks from this index on normalise queries and keys per
  head / rotate them with 2D RoPE (``rope.py``);
- ``alternate_from``: from this block on, odd blocks are "global" (attention across all views
  of a scene) and even ones "local" (within a view). depthcli runs one view per image, where
  both attend over the same tokens; what differs is RoPE: global blocks place every patch at
  the same position, local blocks at its grid position. At this block a learned camera token
  replaces the class token (the original's "reference view" token; its second, "source view"
  token is stored but only used with several views);
- ``cat_local``: a tapped output is ``[last local block's tokens, norm(tokens)]`` along the
  channels (the head sees both; the local half is not normalised, as in the original);
- ``norm_eps``: of the final LayerNorm (DINOv2: 1e-6; Depth Anything 3 builds it with
  ``nn.LayerNorm``'s default 1e-5).
"""
from __future__ import annotations

import torch
from torch import nn

from ..configs import PATCH_SIZE, EncoderConfig
from .block import LAYER_NORM_EPS, TransformerBlock
from .patch_embed import PatchEmbedding
from .position_encoding import PositionEncoding
from .rope import ROPE_BASE, RopeTables, grid_tables, same_position_tables, table_dtype

CAMERA_TOKENS = 2  # reference view, source views


class DinoV2Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig, *, norm_eps: float = LAYER_NORM_EPS, qkv_bias: bool = True,
                 qk_norm_from: int | None = None, rope_from: int | None = None, rope_base: float = ROPE_BASE,
                 alternate_from: int | None = None, cat_local: bool = False) -> None:
        super().__init__()
        self.head_dim = cfg.embed_dim // cfg.num_heads
        self.rope_from, self.rope_base = rope_from, rope_base
        self.alternate_from, self.cat_local = alternate_from, cat_local
        self.patch_embed = PatchEmbedding(cfg.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        if alternate_from is not None:
            self.camera_token = nn.Parameter(torch.zeros(1, CAMERA_TOKENS, cfg.embed_dim))
        self.position_encoding = PositionEncoding(cfg.embed_dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, qkv_bias=qkv_bias,
                             qk_norm=qk_norm_from is not None and i >= qk_norm_from)
            for i in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=norm_eps)

    def is_global(self, i: int) -> bool:
        """Whether block ``i`` is one of the alternating schedule's global (cross-view) blocks."""
        return self.alternate_from is not None and i >= self.alternate_from and i % 2 == 1

    def forward(self, image_bchw: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
        grid_h, grid_w = image_bchw.shape[-2] // PATCH_SIZE, image_bchw.shape[-1] // PATCH_SIZE
        patches_bnc = self.patch_embed(image_bchw)
        cls_b1c = self.cls_token.expand(patches_bnc.shape[0], -1, -1).to(patches_bnc.dtype)
        tokens_bnc = torch.cat((cls_b1c, patches_bnc), dim=1)
        tokens_bnc = tokens_bnc + self.position_encoding(grid_h, grid_w, tokens_bnc.dtype)
        local_rope = global_rope = None
        if self.rope_from is not None:
            where = {"device": image_bchw.device, "dtype": table_dtype(tokens_bnc.dtype)}
            local_rope = grid_tables(grid_h, grid_w, self.head_dim, self.rope_base, **where)
            global_rope = same_position_tables(grid_h, grid_w, self.head_dim, self.rope_base, **where)
        local_bnc = tokens_bnc
        tapped = []
        for i, block in enumerate(self.blocks[: max(taps) + 1]):
            if i == self.alternate_from:
                tokens_bnc = self._with_camera_token(tokens_bnc)
            rope: RopeTables | None = None
            if self.rope_from is not None and i >= self.rope_from:
                rope = global_rope if self.is_global(i) else local_rope
            tokens_bnc = block(tokens_bnc, rope)
            if not self.is_global(i):
                local_bnc = tokens_bnc
            if i in taps:
                out_bnc = self.norm(tokens_bnc)[:, 1:]
                if self.cat_local:
                    out_bnc = torch.cat((local_bnc[:, 1:], out_bnc), dim=-1)
                tapped.append(out_bnc)
        return tapped

    def _with_camera_token(self, tokens_bnc: torch.Tensor) -> torch.Tensor:
        """The leading (class) token replaced by the reference-view camera token."""
        camera_b1c = self.camera_token[:, :1].expand(tokens_bnc.shape[0], -1, -1).to(tokens_bnc.dtype)
        return torch.cat((camera_b1c, tokens_bnc[:, 1:]), dim=1)
