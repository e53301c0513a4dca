"""The reference backend: depthcli's own PyTorch model, on any device and in any precision."""
from __future__ import annotations

import torch

from ...model import DepthAnything
from . import precision_name


class TorchBackend:
    name = "torch"

    def __init__(self, model: DepthAnything) -> None:
        self.model = model.eval()
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.notes: list[str] = []

    def to_input(self, input_bchw: torch.Tensor) -> torch.Tensor:
        x = input_bchw.to(self.device, self.dtype, non_blocking=True)
        self._sync()
        return x

    @torch.inference_mode()
    def run(self, staged: torch.Tensor) -> torch.Tensor:
        depth_bhw = self.model(staged)
        self._sync()
        return depth_bhw

    def describe(self) -> str:
        return f"torch {self.device.type} {precision_name(self.dtype)}"

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
