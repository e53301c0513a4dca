"""The predictor: one loaded model, images in, float32 depth at the image's resolution out.

Split into ``prepare`` (CPU: colour, resize, normalise; safe to run in a worker thread while
the model is busy) and ``infer`` (forward + upsample, timed), so callers can pipeline them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..model import DepthAnything
from .memory import check_fits
from .postprocess import upsample_depth
from .preprocess import DEFAULT_SIZE, preprocess, processed_size
from .stats import FrameStats, peak_memory, reset_peak_memory


@dataclass
class Prepared:
    """A network-ready input and what is needed to map its output back."""

    name: str
    input_bchw: torch.Tensor
    image_hw: tuple[int, int]
    prepare_ms: float


@dataclass
class Prediction:
    depth_hw: np.ndarray  # float32, the image's own (h, w), raw model units (metres if metric)
    stats: FrameStats


class DepthPredictor:
    def __init__(self, model: DepthAnything, *, size: int = DEFAULT_SIZE, max_side: int | None = None) -> None:
        self.model = model.eval()
        self.size = size
        self.max_side = max_side
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.version = model.config.version

    @property
    def unit(self) -> str:
        return "m" if self.model.config.metric else "relative inverse depth"

    def check_fits(self, image_h: int, image_w: int) -> None:
        """Raise ``memory.InsufficientMemoryError`` (a MemoryError) if an image this size cannot
        be run at this predictor's --size/--max-side; see ``runtime/memory.py`` for the rule."""
        nh, nw = processed_size(image_h, image_w, self.size, self.max_side)
        check_fits(nh, nw, self.model.config.encoder, self.dtype, self.device)

    def prepare(self, image_bgr: np.ndarray, name: str = "image") -> Prepared:
        t0 = time.perf_counter()
        self.check_fits(*image_bgr.shape[:2])  # before the resize allocates the network input
        x = preprocess(image_bgr, self.size, self.max_side)
        if self.device.type == "cuda":
            x = x.pin_memory()
        return Prepared(name, x, image_bgr.shape[:2], (time.perf_counter() - t0) * 1000)

    @torch.inference_mode()
    def infer(self, prepared: Prepared) -> Prediction:
        t0 = time.perf_counter()
        reset_peak_memory(self.device)
        x = prepared.input_bchw.to(self.device, self.dtype, non_blocking=True)
        self._sync()
        t1 = time.perf_counter()
        depth_bhw = self.model(x)
        self._sync()
        t2 = time.perf_counter()
        depth_hw = upsample_depth(depth_bhw, prepared.image_hw, self.version)[0].cpu().numpy()
        t3 = time.perf_counter()
        mem, kind = peak_memory(self.device)
        stats = FrameStats(
            name=prepared.name, input_hw=tuple(prepared.image_hw), processed_hw=tuple(x.shape[-2:]),
            infer_ms=(t2 - t1) * 1000, total_ms=prepared.prepare_ms + (t3 - t0) * 1000,
            peak_mem_mb=mem, mem_kind=kind, device=str(self.device), dtype=str(self.dtype).removeprefix("torch."))
        return Prediction(depth_hw.astype(np.float32, copy=False), stats)

    def __call__(self, image_bgr: np.ndarray, name: str = "image") -> Prediction:
        return self.infer(self.prepare(image_bgr, name))

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def predict(model: DepthAnything, image: np.ndarray | str | Path, *, size: int = DEFAULT_SIZE,
            max_side: int | None = None) -> np.ndarray:
    """Depth for one image (a BGR array as cv2 reads it, or a path), float32 (h, w), raw units:
    the same array the original run.py / infer_image compute before normalising for display."""
    if not isinstance(image, np.ndarray):
        from ..io.images import read_image

        image = read_image(image)
    return DepthPredictor(model, size=size, max_side=max_side)(image).depth_hw
