"""Depth Anything 3 for one image: DINOv2 encoder (DA3 options) -> DPT reassemble -> fusion ->
DPT or DualDPT head.

``forward(image_bchw)`` takes a normalised (B, 3, H, W) batch, H and W multiples of 14, and
returns the raw network outputs at that resolution, each (B, H, W): ``depth_bhw`` (through
``exp``), or ``(depth_bhw, sky_bhw)`` for a network with a sky branch (``config.traits.outputs``).
These are what the original ``DepthAnything3Net.forward(x[:, None])`` puts in ``depth`` / ``sky``
before its sky fill (``postprocess.fill_sky``) and, for DA3METRIC, before the focal-length
scaling (``postprocess.metric_scale``). Each image of the batch is one single-view scene.

Shapes stay symbolic: a trace at one size serves every size once the position encoding is fed
in as for V2 (``runtime/backends/openvino_graph.py``'s ``PositionFedModel`` replaces
``encoder.position_encoding``); RoPE positions and the UV embedding come from tensor shapes.
"""
from __future__ import annotations

import torch
from torch import nn

from ..configs import PATCH_SIZE
from ..depth_anything.fusion import Fusion
from ..depth_anything.reassemble import Reassemble
from ..dinov2 import DinoV2Encoder
from .config import DPT, DA3Config
from .heads import DPTHead, DualDPTHead
from .uv_position import add_uv_position

FINAL_NORM_EPS = 1e-5  # the original builds the encoder's last norm and DualDPT's with nn.LayerNorm defaults


class DepthAnything3(nn.Module):
    def __init__(self, config: DA3Config) -> None:
        super().__init__()
        enc = config.encoder
        self.config = config
        self.encoder = DinoV2Encoder(enc, norm_eps=FINAL_NORM_EPS, qk_norm_from=config.qk_norm_from,
                                     rope_from=config.rope_from, alternate_from=config.alternate_from,
                                     cat_local=config.cat_local)
        dual = config.head != DPT
        self.reassemble = Reassemble(config.head_in_dim, enc.out_channels, enc.features,
                                     token_norm_eps=FINAL_NORM_EPS if dual else None,
                                     position=add_uv_position if dual else None)
        self.fusion = Fusion(enc.features)
        self.head: DualDPTHead | DPTHead = (DualDPTHead(enc.features, channels=config.head_channels) if dual
                                            else DPTHead(enc.features, sky=config.sky))

    def forward(self, image_bchw: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h, w = image_bchw.shape[-2:]
        tokens = self.encoder(image_bchw, self.config.taps)
        pyramid = self.reassemble(tokens, h // PATCH_SIZE, w // PATCH_SIZE)
        return self.head(self.fusion(pyramid), (h, w))
