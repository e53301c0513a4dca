"""Video Depth Anything: DINOv2 encoder (per frame) -> temporal DPT head (across the frames).

The encoder sees each frame alone, so ``encode`` and ``decode`` are separate: a caller computes a
frame's features once and reuses them in every window that holds the frame (the window schedule
re-feeds ten frames of each window to the next), or, in streaming mode, encodes one new frame
and decodes it against the cached temporal states of earlier ones.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..configs import PATCH_SIZE
from ..dinov2 import DinoV2Encoder
from .config import VDAConfig
from .head import TemporalDPTHead

Features = list[torch.Tensor]  # the four tapped token tensors, each (N frames, grid_h x grid_w, C)


class VideoDepthAnything(nn.Module):
    """``forward`` takes normalised (B, T, 3, H, W) clips and returns (B, T, H, W) depth, as the
    original ``VideoDepthAnything.forward`` does (T at most ``config.max_frames``)."""

    def __init__(self, config: VDAConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = DinoV2Encoder(config.encoder)
        self.head = TemporalDPTHead(config.encoder, config.max_frames)

    def encode(self, frames_nchw: torch.Tensor) -> Features:
        """(N, 3, H, W) frames -> their features; frame i's are row i of every tensor."""
        return self.encoder(frames_nchw, self.config.taps)

    def decode(self, features: Features, grid_h: int, grid_w: int, frames: int,
               cached: Sequence[torch.Tensor] | None = None, positions: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Features of B clips x ``frames`` consecutive frames (clip-major) -> (B x frames, H, W)
        depth at the network resolution (H = 14 grid_h), and the temporal hidden states.

        Streaming mode: ``frames=1`` and ``cached`` = ``concat_states`` of earlier frames' hidden
        states; the returned states are the new frame's, to cache in turn. With ``positions``,
        ``cached`` holds the earlier frames in slots, in any order (``ContextSlots``)."""
        return self.head(features, grid_h, grid_w, frames, cached, positions)

    def forward(self, frames_btchw: torch.Tensor) -> torch.Tensor:
        b, t, _, h, w = frames_btchw.shape
        features = self.encode(frames_btchw.flatten(0, 1))
        depth_nhw, _ = self.decode(features, h // PATCH_SIZE, w // PATCH_SIZE, t)
        return depth_nhw.unflatten(0, (b, t))


def frame_features(features: Features, index: int) -> Features:
    """One frame's features (rows ``index``), to keep for reuse."""
    return [f[index:index + 1] for f in features]


def stack_features(per_frame: Sequence[Features]) -> Features:
    """Per-frame features, in order, -> the features of that sequence of frames."""
    return [torch.cat(level, dim=0) for level in zip(*per_frame, strict=True)]


def concat_states(per_frame: Sequence[Sequence[torch.Tensor]]) -> list[torch.Tensor]:
    """Hidden states of earlier frames, oldest first (``StreamCache.context()``), -> ``cached``."""
    return [torch.cat(state, dim=1) for state in zip(*per_frame, strict=True)]
