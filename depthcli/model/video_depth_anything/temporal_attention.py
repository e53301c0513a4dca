"""Attention across time: each pixel's sequence of frames attends to itself.

Sequences are ``(S, T, C)``: S = batch x pixels of one feature map, T = frames. Before the
projections every frame gets a fixed sinusoidal position ("ape": absolute position encoding) by
its place in the sequence, so the attention knows frame order; the table has ``max_frames`` rows
and is stored in the checkpoints, so it is loaded (not recomputed) to give the original's bits.

Streaming mode: instead of a whole window, one new frame attends to ``past`` states, the
normalised inputs this attention saw for earlier frames (the model returns them as its hidden
states). They are concatenated in front of the new frame, encoded by position as one sequence,
and only the new frame is queried: the same output it would get as the last frame of a window
holding exactly those frames.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

HEADS = 8


def sinusoid_table(max_frames: int, dim: int) -> torch.Tensor:
    """The (1, max_frames, dim) table sin/cos(position x 10000^(-2i/dim)), in the original's
    float32 arithmetic (it is a buffer in the checkpoints; this only fills a fresh module)."""
    position = torch.arange(max_frames).unsqueeze(1)
    rates = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, max_frames, dim)
    table[0, :, 0::2] = torch.sin(position * rates)
    table[0, :, 1::2] = torch.cos(position * rates)
    return table


class TemporalAttention(nn.Module):
    def __init__(self, dim: int, max_frames: int, heads: int = HEADS) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} not divisible by {heads} heads")
        self.heads = heads
        self.register_buffer("frame_positions", sinusoid_table(max_frames, dim))
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, frames_stc: torch.Tensor, past_spc: torch.Tensor | None = None) -> torch.Tensor:
        """(S, T, C) normalised frames [after (S, P, C) past states] -> (S, T, C)."""
        s, t, c = frames_stc.shape
        seq = frames_stc if past_spc is None else torch.cat((past_spc, frames_stc), dim=1)
        length = seq.shape[1]
        if length > self.frame_positions.shape[1]:
            raise ValueError(f"{length} frames in one temporal sequence; this model takes at most "
                             f"{self.frame_positions.shape[1]}")
        seq = seq + self.frame_positions[:, :length].to(seq.dtype)
        q = self.q(seq[:, length - t:])  # only the new frames ask; all frames answer

        def heads(x: torch.Tensor) -> torch.Tensor:  # (S, L, C) -> (S, heads, L, C / heads)
            return x.reshape(s, x.shape[1], self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(self.k(seq)), heads(self.v(seq)))
        return self.proj(out.transpose(1, 2).reshape(s, t, c))
