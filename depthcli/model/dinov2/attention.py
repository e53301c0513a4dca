"""Multi-head self-attention with one fused qkv projection.

The original computes softmax(q k^T / sqrt(d)) v explicitly, holding the whole N x N matrix.
Two kernels give the same result without it, so memory grows linearly with pixels:

- ``scaled_dot_product_attention`` (SDPA): fused kernels on CUDA/MPS and the fastest in float32
  on the CPU;
- query-chunked matmuls: on the CPU in bfloat16/float16, PyTorch's SDPA kernel runs no faster
  than in float32, while plain bf16 matmuls run several times faster; chunks of queries keep the
  score matrix to ``CHUNK_QUERIES x N``. Used up to ``CHUNKED_MAX_TOKENS`` (see ``use_chunked``).

``Attention.backend`` ("auto", "sdpa" or "chunked") forces one, for benchmarks and tests.

Depth Anything 3 adds two options, both off by default (DINOv2 as Depth Anything V1/V2 ship it):
``qk_norm`` (a LayerNorm over each head's width on queries and keys, eps 1e-5 as the original's
``nn.LayerNorm`` default) and 2D RoPE, applied when ``forward`` is given rotation tables
(``rope.py``). Both happen before the kernel, so both kernels serve every family.
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .rope import RopeTables, apply_rope

CHUNK_QUERIES = 256
CHUNKED_MAX_TOKENS = 4096
QK_NORM_EPS = 1e-5


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      chunk: int = CHUNK_QUERIES) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over (B, heads, N, d), ``chunk`` queries at a time."""
    # contiguous operands (one copy each, the scale folded into q's) let every chunk's matmuls
    # run on dense blocks: about 1.6x faster than strided views of the fused qkv output
    q = q * q.shape[-1] ** -0.5
    k_t = k.transpose(-2, -1).contiguous()
    v = v.contiguous()
    out = torch.empty_like(q)
    for start in range(0, q.shape[-2], chunk):
        scores = torch.matmul(q[:, :, start:start + chunk], k_t)
        torch.matmul(scores.softmax(dim=-1), v, out=out[:, :, start:start + chunk])
    return out


def use_chunked(device: torch.device, dtype: torch.dtype, tokens: int) -> bool:
    """Measured on a 2-core AVX512-BF16 CPU: chunked bf16 attention takes half SDPA's time at
    2443 tokens (518x924), but its score blocks outgrow the caches past ~4k tokens (1036x1036:
    5477 tokens), where SDPA is faster again."""
    return device.type == "cpu" and dtype in (torch.bfloat16, torch.float16) and tokens <= CHUNKED_MAX_TOKENS


class Attention(nn.Module):
    backend: ClassVar[str] = "auto"

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True, qk_norm: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        head_dim = dim // num_heads
        self.q_norm = nn.LayerNorm(head_dim, eps=QK_NORM_EPS) if qk_norm else None
        self.k_norm = nn.LayerNorm(head_dim, eps=QK_NORM_EPS) if qk_norm else None

    def forward(self, tokens_bnc: torch.Tensor, rope: RopeTables | None = None) -> torch.Tensor:
        b, n, c = tokens_bnc.shape
        qkv = self.qkv(tokens_bnc).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (b, heads, n, head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        chunked = self.backend == "chunked" or (
            self.backend == "auto" and use_chunked(tokens_bnc.device, tokens_bnc.dtype, n))
        out_bhnd = chunked_attention(q, k, v) if chunked else F.scaled_dot_product_attention(q, k, v)
        return self.proj(out_bhnd.transpose(1, 2).reshape(b, n, c))
