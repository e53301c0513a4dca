"""Network output -> depth at the image's own resolution, as each original version does it.

V1 run.py upsamples with ``align_corners=False``; V2 ``infer_image`` (and the metric models)
with ``align_corners=True``. Mixing them up is ~1e-2 off.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample_depth(depth_bhw: torch.Tensor, out_hw: tuple[int, int], version: int) -> torch.Tensor:
    """(B, H', W') -> (B, h, w) float32, bilinear."""
    depth_b1hw = depth_bhw.float()[:, None]
    return F.interpolate(depth_b1hw, size=out_hw, mode="bilinear", align_corners=(version == 2))[:, 0]
