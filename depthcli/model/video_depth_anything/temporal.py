"""The motion module: a temporal transformer on one DPT feature map of a clip.

For a (B x T, C, H, W) map it normalises each frame (GroupNorm, 32 groups), turns every pixel
into a sequence over the T frames, projects in, runs one transformer block (two temporal
attentions with pre-LayerNorm and residuals, then a GEGLU feed-forward), projects out and adds
the result to the map. Everything but the attention is per frame and per pixel, so frames only
meet inside the attention.

Each attention returns as its hidden state the normalised frames it took, the states streaming
mode caches; a module's states are in block order, two per block (``STATES_PER_MODULE``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .temporal_attention import TemporalAttention

GROUPS = 32
GROUP_NORM_EPS = 1e-6
BLOCKS = 1
ATTENTIONS_PER_BLOCK = 2
STATES_PER_MODULE = BLOCKS * ATTENTIONS_PER_BLOCK
FF_MULT = 4
SEQUENCE_CHUNK = 4096  # pixels at a time through the blocks (eager mode): bounds their memory


class GegluFeedForward(nn.Module):
    """Linear to 2 x 4C, half gates the other through GELU, linear back to C."""

    def __init__(self, dim: int, mult: int = FF_MULT) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim * mult * 2)
        self.out = nn.Linear(dim * mult, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(value * F.gelu(gate))


class TemporalBlock(nn.Module):
    def __init__(self, dim: int, max_frames: int) -> None:
        super().__init__()
        self.attn_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(ATTENTIONS_PER_BLOCK))
        self.attns = nn.ModuleList(TemporalAttention(dim, max_frames) for _ in range(ATTENTIONS_PER_BLOCK))
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = GegluFeedForward(dim)

    def forward(self, seq_stc: torch.Tensor, past: Sequence[torch.Tensor] | None = None,
                positions: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``past``: each attention's states of earlier frames, concatenated in frame order, or,
        with ``positions``, held in slots (``TemporalAttention.attend_slots``)."""
        states = []
        for i, (norm, attn) in enumerate(zip(self.attn_norms, self.attns, strict=True)):
            normed = norm(seq_stc)
            if past is None:
                attended = attn(normed)
            elif positions is None:
                attended = attn(normed, past[i])
            else:
                attended = attn.attend_slots(normed, past[i], positions)
            seq_stc = attended + seq_stc
            states.append(normed)
        return self.ff(self.ff_norm(seq_stc)) + seq_stc, states


class MotionModule(nn.Module):
    def __init__(self, channels: int, max_frames: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(GROUPS, channels, eps=GROUP_NORM_EPS)
        self.proj_in = nn.Linear(channels, channels)
        self.blocks = nn.ModuleList(TemporalBlock(channels, max_frames) for _ in range(BLOCKS))
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, maps_nchw: torch.Tensor, frames: int, past: Sequence[torch.Tensor] | None = None,
                positions: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """(B x T, C, H, W) maps of T-frame clips (frame-major within each clip) -> the same shape,
        and this module's hidden states, each (B x H x W, T, C). ``past``: the module's states of
        earlier frames, (B x H x W, P, C) each, for streaming mode: in frame order, or in slots
        whose sequence positions ``positions`` gives (``TemporalBlock``)."""
        n, c, h, w = maps_nchw.shape
        if n % frames:
            raise ValueError(f"{n} maps are not whole clips of {frames} frames")
        b = n // frames
        x = self.norm(maps_nchw)
        seq_stc = x.reshape(b, frames, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, frames, c)
        seq_stc = self.proj_in(seq_stc)
        states: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            block_past = None if past is None else past[i * ATTENTIONS_PER_BLOCK:(i + 1) * ATTENTIONS_PER_BLOCK]
            seq_stc, block_states = _chunked(block, seq_stc, block_past, positions)
            states.extend(block_states)
        seq_stc = self.proj_out(seq_stc)
        out_nchw = seq_stc.reshape(b, h * w, frames, c).permute(0, 2, 3, 1).reshape(n, c, h, w)
        return out_nchw + maps_nchw, tuple(states)


def _chunked(block: TemporalBlock, seq_stc: torch.Tensor, past: Sequence[torch.Tensor] | None,
             positions: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``block`` over the pixel sequences ``SEQUENCE_CHUNK`` at a time: each pixel's sequence is
    independent (frames meet only along T), so the result is the same, and the feed-forward's
    8x-wide hidden layer is held for a chunk, not for every pixel of a window at once. Not
    while tracing: a loop over a dynamic size would be baked in (the OpenVINO graphs)."""
    n = seq_stc.shape[0]
    if torch.jit.is_tracing() or n <= SEQUENCE_CHUNK:
        return block(seq_stc, past, positions)
    outs: list[torch.Tensor] = []
    parts: list[list[torch.Tensor]] = []
    for start in range(0, n, SEQUENCE_CHUNK):
        rows = slice(start, start + SEQUENCE_CHUNK)
        out, states = block(seq_stc[rows], None if past is None else [p[rows] for p in past], positions)
        outs.append(out)
        parts.append(states)
    return torch.cat(outs), [torch.cat(s) for s in zip(*parts, strict=True)]
