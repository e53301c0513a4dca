"""The predictor: one loaded model, images in, float32 depth at the image's resolution out.

Split into ``prepare`` (CPU: colour, resize, normalise; safe to run in a worker thread while
the model is busy) and ``infer`` (forward + upsample, timed), so callers can pipeline them.
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..model import DepthAnything
from .backends import Backend
from .backends.torch_backend import TorchBackend
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
    """``backend`` runs the network (``runtime/backends``); the default is the torch model
    itself, as it always was. Pre- and post-processing are the same for every backend."""

    def __init__(self, model: DepthAnything, *, size: int = DEFAULT_SIZE, max_side: int | None = None,
                 backend: Backend | None = None, batch: int = 1) -> None:
        self.model = model.eval()
        self.size = size
        self.max_side = max_side
        self.batch = max(1, batch)  # inputs of one network size run together (runtime/streaming, jobs/image)
        self.backend = backend if backend is not None else TorchBackend(model)
        self.device, self.dtype = self.backend.device, self.backend.dtype
        self.version = model.config.version
        self.notes: list[str] = list(self.backend.notes)  # one-line messages for the user, said once

    @property
    def backend_name(self) -> str:
        return self.backend.name

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

    def infer(self, prepared: Prepared) -> Prediction:
        return self.infer_batch([prepared])[0]

    @torch.inference_mode()
    def infer_batch(self, batch: list[Prepared]) -> list[Prediction]:
        """Several inputs of the SAME network size through the model at once (``--batch``: a
        GPU is kept busy; the results are those of one at a time to float rounding, bit for bit on
        OpenVINO). Each prediction's ``infer_ms`` is its share of the batch's forward time."""
        shapes = {tuple(p.input_bchw.shape[1:]) for p in batch}
        if len(shapes) != 1:
            raise ValueError(f"a batch needs inputs of one network size, got {sorted(shapes)}")
        t0 = time.perf_counter()
        reset_peak_memory(self.device)
        input_bchw = batch[0].input_bchw if len(batch) == 1 else torch.cat([p.input_bchw for p in batch])
        x = self.backend.to_input(input_bchw)
        t1 = time.perf_counter()
        depth_bhw = self.backend.run(x)
        t2 = time.perf_counter()
        depths = [upsample_depth(depth_bhw[i:i + 1], p.image_hw, self.version)[0].cpu().numpy()
                  for i, p in enumerate(batch)]
        t3 = time.perf_counter()
        mem, kind = peak_memory(self.device)
        n = len(batch)
        return [Prediction(depth_hw.astype(np.float32, copy=False), FrameStats(
            name=p.name, input_hw=tuple(p.image_hw), processed_hw=tuple(p.input_bchw.shape[-2:]),
            infer_ms=(t2 - t1) * 1000 / n, total_ms=p.prepare_ms + (t3 - t0) * 1000 / n,
            peak_mem_mb=mem, mem_kind=kind, device=str(self.device), dtype=str(self.dtype).removeprefix("torch."),
            backend=self.backend.name)) for p, depth_hw in zip(batch, depths, strict=True)]

    def __call__(self, image_bgr: np.ndarray, name: str = "image") -> Prediction:
        return self.infer(self.prepare(image_bgr, name))


def predict(model: DepthAnything, image: np.ndarray | str | Path, *, size: int = DEFAULT_SIZE,
            max_side: int | None = None, backend: str | None = None) -> np.ndarray:
    """Depth for one image (a BGR array as cv2 reads it, or a path), float32 (h, w), raw units:
    the same array the original run.py / infer_image compute before normalising for display.

    ``backend``: None or "torch" runs ``model`` itself (the default, as before); "openvino"
    runs it converted for the CPU (the same depth to ~1e-6; converted once per model and cached
    on disk, compiled once per process); "auto" picks openvino for a CPU model when installed.
    """
    if not isinstance(image, np.ndarray):
        from ..io.images import read_image

        image = read_image(image)
    runner = None if backend in (None, "torch") else _api_backend(model, backend)
    return DepthPredictor(model, size=size, max_side=max_side, backend=runner)(image).depth_hw


_API_BACKENDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _weights_version(model: DepthAnything) -> int:
    """Grows with every in-place change of the weights (load_state_dict, edits); tensors made
    under inference_mode have no counter and cannot be edited in place anyway."""
    total = 0
    for p in model.parameters():
        try:
            total += p._version
        except RuntimeError:
            continue
    return total


def _api_backend(model: DepthAnything, requested: str) -> Backend | None:
    """The OpenVINO backend for ``model`` (None: torch), built once per model and weights
    version, so repeated predict() calls do not convert or compile again."""
    from .backends import choose_backend

    param = next(model.parameters())
    name, _ = choose_backend(requested, param.device)
    if name != "openvino":
        return None
    precision = "bf16" if param.dtype in (torch.bfloat16, torch.float16) else "fp32"
    signature = (precision, param.data_ptr(), _weights_version(model))
    cached = _API_BACKENDS.get(model)
    if cached is None or cached[0] != signature:
        from .backends.openvino_backend import OpenVinoBackend

        cached = (signature, OpenVinoBackend(model, precision=precision))
        _API_BACKENDS[model] = cached
    return cached[1]
