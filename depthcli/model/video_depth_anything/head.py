"""The temporal DPT head: Depth Anything V2's DPT head with a motion module at four places.

    tokens -> reassemble: levels 1x4, 1x2, 1x1, 1/2x of the patch grid
              level 1x1 (coarse detail)  -> motion module 0   (before the width convolutions)
              level 1/2x (coarsest)      -> motion module 1
           -> fusion, coarsest first:  block 3 -> motion module 2 -> block 2 -> motion module 3
                                       -> block 1 -> block 0
           -> depth head (conv, upsample to the input's pixels, conv, ReLU, conv, ReLU)

Frames meet only in the motion modules, on the coarse maps: the fine levels and the output
convolutions work per frame. The output is the V2 relative head's, ReLU at the end, for metric
checkpoints too (metres without a fixed range). The reassemble, fusion and depth-head modules are
the V1/V2 ones (``depth_anything/``), with the motion modules passed in as hooks.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..configs import PATCH_SIZE, EncoderConfig
from ..depth_anything.fusion import Fusion
from ..depth_anything.head import DepthHead
from ..depth_anything.reassemble import Reassemble
from .temporal import STATES_PER_MODULE, MotionModule

MOTION_MODULES = 4
STATES = MOTION_MODULES * STATES_PER_MODULE  # hidden states per decode, motion-module-major
FINE_CHUNK = 4  # frames at a time through the fine half (the original's micro-batch): bounds a window's memory


class TemporalDPTHead(nn.Module):
    def __init__(self, enc: EncoderConfig, max_frames: int) -> None:
        super().__init__()
        self.reassemble = Reassemble(enc.embed_dim, enc.out_channels, enc.features)
        self.fusion = Fusion(enc.features)
        widths = (enc.out_channels[2], enc.out_channels[3], enc.features, enc.features)
        self.motion = nn.ModuleList(MotionModule(c, max_frames) for c in widths)
        self.output = DepthHead(enc.features)

    def forward(self, tokens: list[torch.Tensor], grid_h: int, grid_w: int, frames: int,
                cached: Sequence[torch.Tensor] | None = None, positions: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Tapped tokens of B clips x ``frames`` frames -> (B x frames, H, W) depth and the
        ``STATES`` hidden states (module-major). ``cached``: the same states of earlier frames
        (streaming mode), each concatenated along its time axis, or held in slots whose sequence
        positions ``positions`` gives (``TemporalAttention.attend_slots``).

        The fine half sees each frame alone: ``FINE_CHUNK`` frames at a time, as the original
        does, holds an eighth of a window's largest maps at once."""
        path, states = self.coarse(tokens[2:], grid_h, grid_w, frames, cached, positions)
        depth = torch.cat([self.fine([t[i:i + FINE_CHUNK] for t in tokens[:2]], path[i:i + FINE_CHUNK],
                                     grid_h, grid_w) for i in range(0, path.shape[0], FINE_CHUNK)])
        return depth, states

    def coarse(self, tokens: list[torch.Tensor], grid_h: int, grid_w: int, frames: int,
               cached: Sequence[torch.Tensor] | None = None, positions: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The temporal half: taps 2 and 3 of B clips x ``frames`` frames -> the fusion path at
        level 1's size (2 grid_h x 2 grid_w), where every motion module has run, and the states."""
        if cached is not None and len(cached) != STATES:
            raise ValueError(f"need {STATES} cached temporal states, got {len(cached)}")
        states: list[tuple[torch.Tensor, ...]] = [()] * MOTION_MODULES

        def motion(i: int) -> Callable[[torch.Tensor], torch.Tensor]:
            past = None if cached is None else cached[i * STATES_PER_MODULE:(i + 1) * STATES_PER_MODULE]

            def run(maps_nchw: torch.Tensor) -> torch.Tensor:
                maps_nchw, states[i] = self.motion[i](maps_nchw, frames, past, positions)
                return maps_nchw
            return run

        l3, l4 = self.reassemble(tokens, grid_h, grid_w, hooks={2: motion(0), 3: motion(1)}, levels=(2, 3))
        path = self.fusion.coarse(l3, l4, (2 * grid_h, 2 * grid_w), hooks={3: motion(2), 2: motion(3)})
        return path, tuple(s for module_states in states for s in module_states)

    def fine(self, tokens: list[torch.Tensor], path: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
        """The per-frame half: taps 0 and 1 and the coarse path of some frames -> their
        (N, H, W) depth at the network resolution."""
        l1, l2 = self.reassemble(tokens, grid_h, grid_w, levels=(0, 1))
        depth = self.output(self.fusion.fine(path, l1, l2), (grid_h * PATCH_SIZE, grid_w * PATCH_SIZE))
        return depth.squeeze(1)
