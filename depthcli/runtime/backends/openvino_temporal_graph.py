"""Video Depth Anything's torch model -> the OpenVINO graphs of its clip runners' operations
(``runtime/temporal.TemporalBackend``), each traced from depthcli's own modules (same math):

- ``encoder``: ``image (N, 3, H, W)`` + ``position (1, 1 + gh*gw, C)`` -> ``tap0..tap3``, each
  ``(N, gh*gw, C)`` (gh = H/14, gw = W/14): ``VideoDepthAnything.encode`` with the position
  encoding fed in, as ``openvino_graph.PositionFedModel`` does for the per-image families.
- ``window``: taps 2 and 3 of 32 frames + ``grid`` -> ``path (32, F, 2gh, 2gw)``: the coarse,
  temporal half of a window's head (every motion module), no cache;
- ``window_fine``: taps 0 and 1 of a few frames + their ``path`` + ``grid`` -> ``depth (N,
  14gh, 14gw)``: the per-frame half, which the runtime runs ``FINE_CHUNK`` frames at a time (as
  the original's micro-batch), so a window never holds all 32 frames' largest maps at once.
- ``stream``: the taps of one frame + ``grid`` + ``past0..past7``, the states of 31 earlier
  frames held in slots (``(pixels, 31, channels)``, slot-major within a pixel, any frame order) +
  ``positions`` (32 int64: each slot's place in the context, then the frame's) -> ``depth (1,
  14gh, 14gw)`` and ``state0..state7``, the frame's own states to cache (``(pixels, 1,
  channels)``). The attentions run as ``TemporalAttention.attend_slots``: the runtime writes
  only the slots whose frame changed (``schedule.ContextSlots``), and no cached state is
  projected again.
- ``stream_first``: the taps of one frame + ``grid`` -> the same outputs as ``stream``: the first
  frame of a stream, which has no cache. The original runs it as a one-frame window (each
  attention sees that frame alone); no cached input to ``stream`` reproduces that (a copy of the
  frame's own states would be 31 more frames to attend to, at other frame positions), so it is a
  graph of its own: the head's weights only, used once per stream.

``grid`` carries the patch grid: a ``(gh, gw)`` tensor whose values are ignored, read only through
its shape. Tokens alone do not say it (gh*gw tokens fit several grids), and a Python int given to
the traced function becomes a constant, while shape arithmetic stays shape arithmetic in the
graph. So one converted graph serves every grid: gh and gw are dynamic in all four, N in the
encoder. The window's 32 frames and the stream's 31 cached ones are fixed: the runners never
use other counts (``schedule.WINDOW``, ``StreamCache``), and the motion modules' frame position
table holds no more.

Exact in float32 against the torch model (``tests/test_openvino_temporal.py``).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...model.configs import PATCH_SIZE
from ...model.video_depth_anything.head import MOTION_MODULES, STATES, TemporalDPTHead
from ...model.video_depth_anything.schedule import STREAM_CONTEXT, WINDOW
from ...model.video_depth_anything.temporal import STATES_PER_MODULE
from .openvino_graph import PositionFedModel, _with_child, float_cpu_model, position_encoding, trace

GRAPHS = ("encoder", "window", "window_fine", "stream", "stream_first")
TAPS = tuple(f"tap{i}" for i in range(4))
PAST = tuple(f"past{i}" for i in range(STATES))  # the cached states fed to ``stream``, in slots
NEW_STATES = tuple(f"state{i}" for i in range(STATES))  # the frame's own, returned
EXAMPLE_GRID = (2, 3)  # any grid works; small keeps tracing fast (the grid stays dynamic)


class _EncoderGraph(PositionFedModel):
    """``forward(image, position) -> (tap0, .., tap3)``: ``encode`` alone, position fed."""

    def forward(self, image_nchw: torch.Tensor, position_1nc: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with self.fed(position_1nc) as net:
            return tuple(net.encode(image_nchw))


class _DecodeGraph(nn.Module):
    """``forward(tap0, .., tap3, grid[, past0, .., past7, positions])`` -> depth (and the new
    states): ``decode`` of ``frames`` frames with the grid read from ``grid``'s shape, the past
    in slots. Holds the model without its encoder (a shallow copy), so the graph carries the
    head's weights only."""

    def __init__(self, model: nn.Module, frames: int, *, cached: bool, states: bool) -> None:
        super().__init__()
        self.net = _with_child(model, "encoder", nn.Identity())
        self.frames, self.cached, self.states = frames, cached, states

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        taps, grid, past = list(inputs[:4]), inputs[4], list(inputs[5:])
        if len(past) != (STATES + 1 if self.cached else 0):
            raise ValueError(f"{len(past)} cached inputs given")
        positions = past.pop() if self.cached else None
        depth, states = self.net.decode(taps, grid.shape[0], grid.shape[1], self.frames,
                                        past if self.cached else None, positions)
        return (depth, *states) if self.states else depth


class _WindowCoarseGraph(nn.Module):
    """``forward(tap2, tap3, grid) -> path``: the window's temporal half (``TemporalDPTHead.coarse``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.head = model.head

    def forward(self, tap2: torch.Tensor, tap3: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        path, _ = self.head.coarse([tap2, tap3], grid.shape[0], grid.shape[1], WINDOW)
        return path


class _WindowFineGraph(nn.Module):
    """``forward(tap0, tap1, path, grid) -> depth``: the per-frame half (``TemporalDPTHead.fine``)
    of any number of frames."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.head = model.head

    def forward(self, tap0: torch.Tensor, tap1: torch.Tensor, path: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return self.head.fine([tap0, tap1], path, grid.shape[0], grid.shape[1])


def state_channels(model: nn.Module) -> tuple[int, ...]:
    """The channel count of each hidden state, in ``STATES`` order (motion-module-major)."""
    head: TemporalDPTHead = model.head
    return tuple(m.proj_in.in_features for m in head.motion for _ in range(STATES_PER_MODULE))


def state_pixels(grid_h: int, grid_w: int) -> tuple[int, ...]:
    """The pixel count (first dimension) of each hidden state for a grid: the motion modules
    work on the 1x, 1/2x (stride-2 convolution: ceil), 1x and 2x maps of the patch grid."""
    half = ((grid_h + 1) // 2) * ((grid_w + 1) // 2)
    full = grid_h * grid_w
    per_module = (full, half, full, 4 * full)
    assert len(per_module) == MOTION_MODULES
    return tuple(p for p in per_module for _ in range(STATES_PER_MODULE))


def convert_temporal(model: nn.Module) -> dict[str, tuple[Any, float]]:
    """``GRAPHS`` name -> (openvino.Model, seconds its conversion took). Graphs are float32
    (the precision is chosen when they are compiled); the module docstring gives their inputs
    and outputs, in order."""
    import openvino as ov

    model = float_cpu_model(model)
    c = model.config.encoder.embed_dim
    gh, gw = EXAMPLE_GRID
    example_image = torch.zeros(1, 3, gh * PATCH_SIZE, gw * PATCH_SIZE)
    position = position_encoding(model, gh, gw).clone()
    encoder = _EncoderGraph(model).eval()
    with torch.no_grad():
        # the example's taps and states feed the decode graphs' examples (right shapes)
        taps = [t.clone() for t in encoder(example_image, position)]
    grid = torch.zeros(gh, gw)
    window_taps = dict.fromkeys(TAPS, ov.PartialShape([WINDOW, -1, c]))
    frame_taps = dict.fromkeys(TAPS, ov.PartialShape([1, -1, c]))
    grid_shape = {"grid": ov.PartialShape([-1, -1])}
    past_shapes = {name: ov.PartialShape([-1, STREAM_CONTEXT, ch])
                   for name, ch in zip(PAST, state_channels(model), strict=True)}
    past_shapes["positions"] = ov.PartialShape([STREAM_CONTEXT + 1])
    with torch.no_grad():
        _, first_states = model.decode(taps, gh, gw, 1)
        path, _ = model.head.coarse(taps[2:], gh, gw, 1)
    past = (*(s.expand(-1, STREAM_CONTEXT, -1).contiguous() for s in first_states),
            torch.arange(STREAM_CONTEXT + 1))
    outputs = ("depth", *NEW_STATES)
    return {
        "encoder": trace(encoder, (example_image, position),
                         {"image": ov.PartialShape([-1, 3, -1, -1]), "position": ov.PartialShape([1, -1, c])},
                         TAPS),
        "window": trace(_WindowCoarseGraph(model).eval(),
                        (*(t.expand(WINDOW, -1, -1).contiguous() for t in taps[2:]), grid),
                        {name: window_taps[name] for name in TAPS[2:]} | grid_shape, ("path",)),
        "window_fine": trace(_WindowFineGraph(model).eval(), (*taps[:2], path, grid),
                             {**dict.fromkeys(TAPS[:2], ov.PartialShape([-1, -1, c])),
                              "path": ov.PartialShape([-1, model.config.encoder.features, -1, -1]), **grid_shape},
                             ("depth",)),
        "stream": trace(_DecodeGraph(model, 1, cached=True, states=True), (*taps, grid, *past),
                        {**frame_taps, **grid_shape, **past_shapes}, outputs),
        "stream_first": trace(_DecodeGraph(model, 1, cached=False, states=True), (*taps, grid),
                              {**frame_taps, **grid_shape}, outputs),
    }
