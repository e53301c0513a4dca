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

``attend_slots`` computes the same thing with less work and no concatenation, for a runtime that
keeps the cached states in place (a slot per frame, in any order) and writes only new frames'
states (the OpenVINO streaming graph). Every projection is linear, so instead of projecting
the keys and values of all 32 frames for one query it moves them onto the query side:
``q . W_k (x + p) = (W_k^T q) . x + (W_k^T q) . p`` and ``sum_j a_j W_v (x_j + p_j) = W_v sum_j
a_j (x_j + p_j)``. Each cached state is then read twice (scores, weighted sum) and never
projected or copied; the position term uses each slot's position, so slot order is free. Same
math, float32 rounding apart.
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

    def attend_slots(self, frame_s1c: torch.Tensor, slots_spc: torch.Tensor, positions: torch.Tensor
                     ) -> torch.Tensor:
        """``forward(frame, past)`` of one new frame, with the past as ``slots`` (S, P, C) in any
        order: ``positions`` (P + 1,) int64 gives each slot's place in the sequence ``forward``
        would build, then the new frame's (P). See the module docstring."""
        s, _, c = frame_s1c.shape
        h, d = self.heads, c // self.heads
        table_lc = self.frame_positions[0].to(frame_s1c.dtype).index_select(0, positions)
        slot_table_pc, own_sc = table_lc[:-1], frame_s1c[:, 0] + table_lc[-1]
        q_hsd = self.q(own_sc).reshape(s, h, d).transpose(0, 1)
        qk_shc = torch.matmul(q_hsd, self.k.weight.reshape(h, d, c)).transpose(0, 1)  # W_k^T q per head
        scores_shl = torch.cat((torch.matmul(qk_shc, slots_spc.transpose(1, 2)) + torch.matmul(qk_shc, slot_table_pc.T),
                                (qk_shc * own_sc.unsqueeze(1)).sum(-1, keepdim=True)), dim=-1)
        weights_shl = torch.softmax(scores_shl * d ** -0.5, dim=-1)
        past_w_shp, own_w_sh1 = weights_shl[..., :-1], weights_shl[..., -1:]
        mixed_shc = (torch.matmul(past_w_shp, slots_spc) + torch.matmul(past_w_shp, slot_table_pc)
                     + own_w_sh1 * own_sc.unsqueeze(1))
        out_hsd = torch.matmul(mixed_shc.transpose(0, 1), self.v.weight.reshape(h, d, c).transpose(1, 2))
        return self.proj(out_hsd.transpose(0, 1).reshape(s, 1, c))
