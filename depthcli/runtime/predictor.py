"""The predictor: one network behind a backend, images in, float32 depth at the image's
resolution out, for every family the same way.

Split into ``prepare`` (CPU: colour, resize, normalise; safe to run in a worker thread while
the model is busy) and ``infer`` (forward + postprocessing, timed), so callers can pipeline
them. What differs between families (the resize rule, what the output means, the sky, the
focal length of metric DA3) comes from the config's ``traits``; no code here tests a name.

No torch at import: a predictor over a cached OpenVINO model never loads it. The torch backend
(``backends/torch_backend.py``) is imported only for a torch model.
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .backends import Backend, precision_name
from .device import device_type
from .memory import check_fits
from .postprocess import finish, upsample_bilinear
from .preprocess import preprocess, processed_size
from .stats import FrameStats, peak_memory, reset_peak_memory

DEFAULT_FOV_DEG = 60.0  # io.formats.intrinsics.DEFAULT_FOV_DEG: the camera of a focal-scaled metric model by default


@dataclass
class Prepared:
    """A network-ready input and what is needed to map its output back."""

    name: str
    input_bchw: np.ndarray  # float32 (1, 3, H', W')
    image_hw: tuple[int, int]
    prepare_ms: float
    focal_px: float | None = None  # the photo's focal length in pixels (focal-scaled metric models)


@dataclass
class Prediction:
    depth_hw: np.ndarray  # float32, the image's own (h, w), raw model units (metres if metric)
    stats: FrameStats
    focal_px: float | None = None  # the photo's focal length its metres were scaled with (DA3METRIC)
    sky_net_hw: np.ndarray | None = None  # the sky head's output at the network resolution (DA3 mono/metric)

    def sky_mask(self) -> np.ndarray | None:
        """(h, w) bool, True where the sky head says sky (output >= 0.3, the rule the depth's sky
        fill uses), at the image's resolution (the output resized bilinearly, as the depth is);
        None for a model without a sky head."""
        if self.sky_net_hw is None:
            return None
        from ..model.depth_anything_3.postprocess import sky_mask

        return sky_mask(upsample_bilinear(self.sky_net_hw, self.depth_hw.shape, align_corners=True))


class DepthPredictor:
    """``backend`` runs the network (``runtime/backends``); without one, the torch model
    ``model`` itself runs, as it always did. ``config`` (the family config, torch-free) is the
    model's unless given: a predictor over a cached OpenVINO model has no torch model at all."""

    def __init__(self, model: Any = None, *, size: int | None = None, max_side: int | None = None,
                 backend: Backend | None = None, batch: int = 1, config: Any = None) -> None:
        if backend is None:
            from .backends.torch_backend import TorchBackend

            backend = TorchBackend(model)
        self.model = model  # the torch module, when there is one (the Python API's, the torch backend's)
        self.config = config if config is not None else model.config
        self.traits = self.config.traits
        self.size = self.traits.default_size if size is None else size
        self.max_side = max_side
        self.batch = max(1, batch)  # inputs of one network size run together (runtime/streaming, jobs/image)
        self.backend = backend
        self.device, self.dtype = backend.device, backend.dtype
        self.notes: list[str] = list(backend.notes)  # one-line messages for the user, said once

    @property
    def frames_at_once(self) -> int:
        """Frames the network sees in one forward (a clip model's window), for the memory check."""
        return getattr(self.config, "max_frames", 1) if self.traits.temporal else 1

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def unit(self) -> str:
        return self.traits.kind

    def check_fits(self, image_h: int, image_w: int) -> None:
        """Raise ``memory.InsufficientMemoryError`` (a MemoryError) if an image this size cannot
        be run at this predictor's --size/--max-side; see ``runtime/memory.py`` for the rule."""
        nh, nw = processed_size(image_h, image_w, self.size, self.max_side, self.traits)
        check_fits(nh, nw, self.config.encoder, self.dtype, self.device, self.frames_at_once)

    def prepare(self, image_bgr: np.ndarray, name: str = "image", *, focal_px: float | None = None) -> Prepared:
        """``focal_px``: the photo's focal length in pixels, for models whose metres depend on it
        (default: a 60 degree horizontal field of view, as depthcli's point clouds assume)."""
        t0 = time.perf_counter()
        h, w = image_bgr.shape[:2]
        self.check_fits(h, w)  # before the resize allocates the network input
        x = preprocess(image_bgr, self.size, self.max_side, self.traits)
        if focal_px is None and self.traits.focal_divisor is not None:
            focal_px = w / 2.0 / np.tan(np.radians(DEFAULT_FOV_DEG) / 2.0)
        return Prepared(name, x, (h, w), (time.perf_counter() - t0) * 1000, focal_px)

    def infer(self, prepared: Prepared) -> Prediction:
        return self.infer_batch([prepared])[0]

    def infer_batch(self, batch: list[Prepared]) -> list[Prediction]:
        """Several inputs of the SAME network size through the model at once (``--batch``: a
        GPU is kept busy; the results are those of one at a time to float rounding, bit for bit on
        OpenVINO). Each prediction's ``infer_ms`` is its share of the batch's forward time."""
        shapes = {tuple(p.input_bchw.shape[1:]) for p in batch}
        if len(shapes) != 1:
            raise ValueError(f"a batch needs inputs of one network size, got {sorted(shapes)}")
        t0 = time.perf_counter()
        reset_peak_memory(self.device)
        input_bchw = batch[0].input_bchw if len(batch) == 1 else np.concatenate([p.input_bchw for p in batch])
        staged = self.backend.to_input(input_bchw)
        t1 = time.perf_counter()
        outputs = self.backend.run(staged)
        t2 = time.perf_counter()
        depths = [self._finish(outputs, i, p) for i, p in enumerate(batch)]
        t3 = time.perf_counter()
        mem, kind = peak_memory(self.device)
        n = len(batch)
        return [Prediction(depth_hw.astype(np.float32, copy=False), FrameStats(
            name=p.name, input_hw=tuple(p.image_hw), processed_hw=tuple(p.input_bchw.shape[-2:]),
            infer_ms=(t2 - t1) * 1000 / n, total_ms=p.prepare_ms + (t3 - t0) * 1000 / n,
            peak_mem_mb=mem, mem_kind=kind, device=self.device, dtype=self.dtype,
            backend=self.backend.name), p.focal_px, self._sky(outputs, i))
            for i, (p, depth_hw) in enumerate(zip(batch, depths, strict=True))]

    def _sky(self, outputs: dict[str, Any], index: int) -> np.ndarray | None:
        """One image's sky output at the network resolution, on the host (small)."""
        if "sky" not in outputs:
            return None
        sky = outputs["sky"][index]
        return sky if isinstance(sky, np.ndarray) else sky.float().cpu().numpy()

    def _finish(self, outputs: dict[str, Any], index: int, prepared: Prepared) -> np.ndarray:
        """Sky, focal scaling and the upsample back: NumPy for outputs on the host, the device
        for outputs a GPU holds (``torch_backend.finish_on_device``)."""
        if isinstance(outputs["depth"], np.ndarray):
            return finish({name: out[index] for name, out in outputs.items()}, self.traits, prepared.image_hw,
                          prepared.focal_px)
        from .backends.torch_backend import finish_on_device

        return finish_on_device(outputs, index, self.traits, prepared.image_hw, prepared.focal_px)

    def describe(self) -> str:
        """``openvino cpu bf16``: what ran the network."""
        return f"{self.backend.name} {device_type(self.device)} {precision_name(self.dtype)}"

    def __call__(self, image_bgr: np.ndarray, name: str = "image", *, focal_px: float | None = None) -> Prediction:
        return self.infer(self.prepare(image_bgr, name, focal_px=focal_px))


def predict(model: Any, image: np.ndarray | str | Path, *, size: int | None = None,
            max_side: int | None = None, backend: str | None = None, focal_px: float | None = None) -> np.ndarray:
    """Depth for one image (a BGR array as cv2 reads it, or a path), float32 (h, w), raw units:
    the same array the original scripts compute before normalising for display (inverse depth,
    relative depth or metres: ``model.config.traits.kind``).

    ``size``: the network input size (default: the family's, 518 or 504 for DA3). ``backend``:
    None or "torch" runs ``model`` itself (the default, as before); "openvino" runs it converted
    for the CPU (the same depth to ~1e-6; converted once per model and cached on disk, compiled
    once per process); "auto" picks openvino for a CPU model when installed. ``focal_px``: the
    photo's focal length in pixels, for DA3METRIC (default: a 60 degree field of view).
    """
    if not isinstance(image, np.ndarray):
        from ..io.images import read_image

        image = read_image(image)
    runner = None if backend in (None, "torch") else _api_backend(model, backend)
    return DepthPredictor(model, size=size, max_side=max_side, backend=runner)(image, focal_px=focal_px).depth_hw


_API_BACKENDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _weights_version(model: Any) -> int:
    """Grows with every in-place change of the weights (load_state_dict, edits); tensors made
    under inference_mode have no counter and cannot be edited in place anyway."""
    total = 0
    for p in model.parameters():
        try:
            total += p._version
        except RuntimeError:
            continue
    return total


def _api_backend(model: Any, requested: str) -> Backend | None:
    """The OpenVINO backend for ``model`` (None: torch), built once per model and weights
    version, so repeated predict() calls do not convert or compile again."""
    from .backends import choose_backend

    param = next(model.parameters())
    name, _ = choose_backend(requested, param.device.type)
    if name != "openvino":
        return None
    precision = "bf16" if str(param.dtype) in ("torch.bfloat16", "torch.float16") else "fp32"
    signature = (precision, param.data_ptr(), _weights_version(model))
    cached = _API_BACKENDS.get(model)
    if cached is None or cached[0] != signature:
        from .backends.openvino_convert import backend_for_model

        cached = (signature, backend_for_model(model, precision=precision))
        _API_BACKENDS[model] = cached
    return cached[1]
