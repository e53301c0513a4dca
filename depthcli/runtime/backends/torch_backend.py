"""The reference backend: depthcli's own PyTorch model, on any device and in any precision."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...model.configs import Traits
from . import precision_name


class TorchBackend:
    name = "torch"

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model.eval()
        param = next(model.parameters())
        self.torch_device, self.torch_dtype = param.device, param.dtype
        self.device = str(param.device)
        self.dtype = str(param.dtype).removeprefix("torch.")
        self.outputs = model.config.traits.outputs
        self.notes: list[str] = []

    def to_input(self, input_bchw: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(input_bchw))
        if self.torch_device.type == "cuda":
            x = x.pin_memory()
        x = x.to(self.torch_device, self.torch_dtype, non_blocking=True)
        self._sync()
        return x

    @torch.inference_mode()
    def run(self, staged: torch.Tensor) -> dict[str, Any]:
        out = self.model(staged)
        tensors = (out,) if isinstance(out, torch.Tensor) else tuple(out)
        self._sync()
        if self.torch_device.type == "cpu":  # the NumPy postprocessing, as on OpenVINO
            return {name: t.float().numpy() for name, t in zip(self.outputs, tensors, strict=True)}
        return dict(zip(self.outputs, tensors, strict=True))

    def describe(self) -> str:
        return f"torch {self.torch_device.type} {precision_name(self.dtype)}"

    def _sync(self) -> None:
        if self.torch_device.type == "cuda":
            torch.cuda.synchronize(self.torch_device)


@torch.inference_mode()
def finish_on_device(outputs: dict[str, torch.Tensor], index: int, traits: Traits, image_hw: tuple[int, int],
                     focal_px: float | None) -> np.ndarray:
    """``runtime.postprocess.finish`` for outputs that live on a GPU: the sky and the focal
    scaling at the network resolution (small, on the host, in NumPy: the same code as the CPU
    path), then the bilinear upsample to the image size on the device, where it is fast."""
    from .. import postprocess

    depth = outputs["depth"][index].float()
    if traits.sky or traits.focal_divisor is not None:
        small = {name: t[index].float().cpu().numpy() for name, t in outputs.items()}
        depth = torch.from_numpy(postprocess.network_depth(small, traits, image_hw[1], focal_px)).to(depth.device)
    up = F.interpolate(depth[None, None], size=image_hw, mode="bilinear", align_corners=traits.align_corners)
    return up[0, 0].cpu().numpy()
