"""Multi-head self-attention with one fused qkv projection.

The original computes softmax(q k^T / sqrt(d)) v explicitly; scaled_dot_product_attention gives
the same result (to float32 rounding) without the N x N matrix, so memory grows linearly with
pixels and fused kernels run on CUDA.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, tokens_bnc: torch.Tensor) -> torch.Tensor:
        b, n, c = tokens_bnc.shape
        qkv = self.qkv(tokens_bnc).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (b, heads, n, head_dim)
        out_bhnd = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out_bhnd.transpose(1, 2).reshape(b, n, c))
