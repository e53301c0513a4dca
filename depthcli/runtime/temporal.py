"""Clip models (``Traits.temporal``: Video Depth Anything): frames in, final depth frames out,
streamed, in memory bounded by about one window whatever the clip's length.

The predictor's clip-level interface (``clip_runner``) is what ``runtime/streaming.stream_depth``
drives for every model: a per-frame model's runner answers each frame at once (batched), a clip
model's runner holds frames until their depth is final:

- ``window`` (the original ``infer_video_depth``, default for files): 32-frame windows advancing
  by 22 (``model/video_depth_anything/schedule.py``). Each frame is encoded once: the 10 inputs a
  window re-feeds from the previous one reuse their features. Each window's depth is upsampled
  to the frame size (bilinear, ``align_corners=True``) and aligned; a frame is final about one
  window after it arrived, so frames, features and depth of at most ~42 frames are held.
- ``stream`` (the original ``video_depth_stream.py``, default for cameras and live streams): one
  encoder pass per frame, its depth decoded against the cached temporal states of 31 earlier
  frames (``StreamCache``): the answer comes at once.

Backends (``TemporalBackend``): the torch model here; OpenVINO in ``backends/openvino_temporal.py``.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np

from ..model.configs import PATCH_SIZE
from ..model.video_depth_anything.schedule import StreamCache, Window, WindowAligner, WindowPlanner
from .postprocess import upsample_bilinear
from .predictor import DepthPredictor, Prediction, Prepared
from .stats import FrameStats, peak_memory, reset_peak_memory

MODES = ("window", "stream")
Result = tuple[int, Any, Prediction]  # (frame index, the frame as decoded, its prediction)


class TemporalUsageError(ValueError):
    """A clip model asked to do what it cannot (one image alone): a usage error (exit 2)."""


class TemporalBackend(Protocol):
    name: str
    device: str
    dtype: str
    notes: list[str]

    def encode(self, frames_nchw: np.ndarray) -> list[Any]:
        """Normalised float32 (N, 3, H, W) frames -> each frame's encoder features (opaque)."""

    def decode_window(self, features: list[Any], grid_hw: tuple[int, int]) -> np.ndarray:
        """The features of a window's frames, in order -> (T, H, W) float32 depth at the network
        resolution."""

    def decode_stream(self, features: Any, grid_hw: tuple[int, int], context: list[Any]
                      ) -> tuple[np.ndarray, Any]:
        """One frame's features and the cached states of earlier frames (``[]`` for the first)
        -> its (H, W) depth at the network resolution and its own states, to cache."""

    def describe(self) -> str: ...


class TorchTemporalBackend:
    """The reference: depthcli's ``VideoDepthAnything`` torch module, any device and precision."""

    name = "torch"

    def __init__(self, model: Any) -> None:
        import torch

        from ..model.video_depth_anything.model import concat_states, frame_features, stack_features

        self._torch, self._frame_features = torch, frame_features
        self._stack, self._concat = stack_features, concat_states
        self.model = model.eval()
        param = next(model.parameters())
        self.torch_device, self.torch_dtype = param.device, param.dtype
        self.device, self.dtype = str(param.device), str(param.dtype).removeprefix("torch.")
        self.notes: list[str] = []

    def encode(self, frames_nchw: np.ndarray) -> list[Any]:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(frames_nchw)).to(self.torch_device, self.torch_dtype)
        with torch.inference_mode():
            features = self.model.encode(x)
        return [self._frame_features(features, i) for i in range(x.shape[0])]

    def decode_window(self, features: list[Any], grid_hw: tuple[int, int]) -> np.ndarray:
        with self._torch.inference_mode():
            depth, _ = self.model.decode(self._stack(features), *grid_hw, len(features))
        return depth.float().cpu().numpy()

    def decode_stream(self, features: Any, grid_hw: tuple[int, int], context: list[Any]) -> tuple[np.ndarray, Any]:
        with self._torch.inference_mode():
            depth, states = self.model.decode(features, *grid_hw, 1, self._concat(context) if context else None)
        return depth[0].float().cpu().numpy(), states

    def describe(self) -> str:
        from .backends import precision_name

        return f"torch {self.torch_device.type} {precision_name(self.dtype)}"


class TemporalPredictor(DepthPredictor):
    """A clip model behind a ``TemporalBackend``: the same preprocessing, memory check and
    description as ``DepthPredictor``, but depth only through ``clip_runner`` (a clip model has
    no answer for one image alone)."""

    def __init__(self, model: Any = None, *, backend: TemporalBackend | None = None, config: Any = None,
                 size: int | None = None, max_side: int | None = None, batch: int = 1,
                 mode: str = "window") -> None:
        if mode not in MODES:
            raise TemporalUsageError(f"--temporal {mode}: choose {' or '.join(MODES)}")
        super().__init__(model, backend=backend or TorchTemporalBackend(model), config=config, size=size,
                         max_side=max_side, batch=batch)
        self.mode = mode

    def infer_batch(self, batch: list[Prepared]) -> list[Prediction]:
        raise TemporalUsageError(f"{self.config.describe} is a video model: it estimates depth over a clip's "
                                 f"frames (depthcli video, depthcli webcam), not one image alone")

    def clip_runner(self, mode: str | None = None) -> WindowRun | StreamRun:
        mode = mode or self.mode
        if mode not in MODES:
            raise TemporalUsageError(f"--temporal {mode}: choose {' or '.join(MODES)}")
        return WindowRun(self) if mode == "window" else StreamRun(self)


class _Run:
    """What both runners share: stats per frame, the upsample back."""

    def __init__(self, predictor: TemporalPredictor) -> None:
        self.predictor = predictor
        self.backend = predictor.backend

    def _prediction(self, prepared: Prepared, depth_hw: np.ndarray, infer_ms: float, total_ms: float) -> Prediction:
        p = self.predictor
        mem, kind = peak_memory(p.device)
        return Prediction(depth_hw.astype(np.float32, copy=False), FrameStats(
            name=prepared.name, input_hw=tuple(prepared.image_hw), processed_hw=tuple(prepared.input_bchw.shape[-2:]),
            infer_ms=infer_ms, total_ms=total_ms, peak_mem_mb=mem, mem_kind=kind, device=p.device, dtype=p.dtype,
            backend=self.backend.name))

    def _upsample(self, depth_hw: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        return upsample_bilinear(depth_hw, image_hw, self.predictor.traits.align_corners)

    def run(self, items: Iterable[tuple[int, Any, Prepared]]) -> list[Result]:
        """Frames (index, frame, prepared), in order -> the results final now, in order."""
        out: list[Result] = []
        for item in items:
            out += self.push(*item)
        return out

    def push(self, index: int, frame: Any, prepared: Prepared) -> list[Result]:
        raise NotImplementedError

    def finish(self) -> list[Result]:
        return []


class WindowRun(_Run):
    """Window mode, streamed (see the module docstring). Frames are encoded as they come (the
    ones handed together in one call), so a window only decodes."""

    def __init__(self, predictor: TemporalPredictor) -> None:
        super().__init__(predictor)
        self.planner = WindowPlanner()
        self.aligner = WindowAligner(metric=predictor.config.metric)
        self._frames: dict[int, tuple[int, Any, Prepared]] = {}  # position -> (index, frame, prepared)
        self._features: dict[int, Any] = {}  # position -> encoder features, until no window needs them
        self._ms: dict[int, list[float]] = {}  # position -> [model ms, total ms], shares of its work
        self._newest: Prepared | None = None  # the newest frame's input: the clip's sizes (see _run)

    @property
    def held_frames(self) -> int:
        """Frames held (decoded pictures and their features): bounded by about one window."""
        return len(self._frames)

    def run(self, items: Iterable[tuple[int, Any, Prepared]]) -> list[Result]:
        items = list(items)
        if not items:
            return []
        t0 = time.perf_counter()
        reset_peak_memory(self.predictor.device)
        features = self.backend.encode(np.concatenate([prepared.input_bchw for _, _, prepared in items]))
        encode_ms = (time.perf_counter() - t0) * 1000 / len(items)
        windows: list[Window] = []
        for (index, frame, prepared), feats in zip(items, features, strict=True):
            position = self.planner.frames_seen
            self._features[position] = feats
            self._ms[position] = [encode_ms, prepared.prepare_ms + encode_ms]
            # the input is encoded: only its shape is needed from here on (the stats)
            prepared.input_bchw = np.broadcast_to(np.float32(0), prepared.input_bchw.shape)
            self._frames[position] = (index, frame, prepared)
            self._newest = prepared
            windows += self.planner.push()
        return self._run_windows(windows)

    def push(self, index: int, frame: Any, prepared: Prepared) -> list[Result]:
        return self.run([(index, frame, prepared)])

    def finish(self) -> list[Result]:
        results = self._run_windows(self.planner.finish())
        return results + self._emit(self.aligner.finish())

    def _run_windows(self, windows: list[Window]) -> list[Result]:
        results: list[Result] = []
        for window in windows:
            results += self._run(window)
        return results

    def _run(self, window: Window) -> list[Result]:
        """Decode one window and hand its depth to the aligner. The network and frame sizes come
        from the newest frame pushed (one clip, one size), not from the window's own frames: a
        clip of 22k + 1 or 22k + 2 frames (k >= 1) ends with a window whose frames are all final,
        emitted and dropped already (the original still runs it; its depth falls on padding,
        which the aligner drops)."""
        t0 = time.perf_counter()
        newest = self._newest
        grid_hw = (newest.input_bchw.shape[-2] // PATCH_SIZE, newest.input_bchw.shape[-1] // PATCH_SIZE)
        depth_thw = self.backend.decode_window([self._features[p] for p in window.frames], grid_hw)
        t1 = time.perf_counter()
        upsampled = [self._upsample(d, newest.image_hw) for d in depth_thw]
        final = self.aligner.add(window, upsampled)
        t2 = time.perf_counter()
        refed = {window.frames[p] for p in window.refed}
        own = sorted({p for p in window.frames if p not in refed})  # the frames this window sees first
        for p in own:
            self._ms[p][0] += (t1 - t0) * 1000 / len(own)
            self._ms[p][1] += (t2 - t0) * 1000 / len(own)
        keep = set(window.keyframes)
        for p in [p for p in self._features if p not in keep]:  # only the next window's re-fed inputs stay
            del self._features[p]
        return self._emit(final)

    def _emit(self, final: list[tuple[int, np.ndarray]]) -> list[Result]:
        results = []
        for position, depth_hw in final:
            index, frame, prepared = self._frames.pop(position)
            infer_ms, total_ms = self._ms.pop(position, (0.0, prepared.prepare_ms))
            results.append((index, frame, self._prediction(prepared, depth_hw, infer_ms, total_ms)))
        return results


class StreamRun(_Run):
    """Streaming mode: each frame's depth at once, against cached temporal states."""

    def __init__(self, predictor: TemporalPredictor) -> None:
        super().__init__(predictor)
        self.cache = StreamCache()

    def push(self, index: int, frame: Any, prepared: Prepared) -> list[Result]:
        t0 = time.perf_counter()
        reset_peak_memory(self.predictor.device)
        x = prepared.input_bchw
        grid_hw = (x.shape[-2] // PATCH_SIZE, x.shape[-1] // PATCH_SIZE)
        (features,) = self.backend.encode(x)
        depth_hw, states = self.backend.decode_stream(features, grid_hw, self.cache.context())
        self.cache.add(states)
        t1 = time.perf_counter()
        depth_hw = self._upsample(depth_hw, prepared.image_hw)
        total_ms = prepared.prepare_ms + (time.perf_counter() - t0) * 1000
        return [(index, frame, self._prediction(prepared, depth_hw, (t1 - t0) * 1000, total_ms))]


class PerFrameRun:
    """A per-frame model's clip runner: every frame answered at once, those handed together run
    as one batch (``--batch``; they share a network size, see ``streaming._take_batch``)."""

    def __init__(self, predictor: DepthPredictor) -> None:
        self.predictor = predictor

    def run(self, items: list[tuple[int, Any, Prepared]]) -> list[Result]:
        prepared = [p for _, _, p in items]
        predictions = ([self.predictor.infer(prepared[0])] if len(prepared) == 1
                       else self.predictor.infer_batch(prepared))
        return [(index, frame, prediction) for (index, frame, _), prediction in zip(items, predictions, strict=True)]

    def finish(self) -> list[Result]:
        return []


def clip_runner(predictor: Any, mode: str | None = None) -> Any:
    """The runner ``stream_depth`` drives: the predictor's own for clip models, else per frame."""
    if getattr(predictor, "clip_runner", None) is not None:
        return predictor.clip_runner(mode)
    return PerFrameRun(predictor)
