"""Pre-norm transformer block: x + LS1(attn(LN(x))), then x + LS2(mlp(LN(x))).

``qkv_bias`` and ``qk_norm`` are passed to the attention; RoPE tables, when given to
``forward``, rotate its queries and keys (Depth Anything 3)."""
from __future__ import annotations

import torch
from torch import nn

from .attention import Attention
from .rope import RopeTables

LAYER_NORM_EPS = 1e-6


class LayerScale(nn.Module):
    """A learned per-channel gain on each residual branch (DINOv2 initialises it to 1.0)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, *, qkv_bias: bool = True,
                 qk_norm: bool = False) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, qk_norm=qk_norm)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, tokens_bnc: torch.Tensor, rope: RopeTables | None = None) -> torch.Tensor:
        tokens_bnc = tokens_bnc + self.ls1(self.attn(self.norm1(tokens_bnc), rope))
        return tokens_bnc + self.ls2(self.mlp(self.norm2(tokens_bnc)))
