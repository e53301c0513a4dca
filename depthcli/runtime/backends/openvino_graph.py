"""depthcli's torch model (any family) -> one OpenVINO model for every input size.

The network is traced as it is (same modules, same math) with one change of plumbing: the
position encoding becomes a second graph input instead of being computed inside. The original
resizes the learned 37x37 table bicubically with a ``scale_factor`` formula that a generic
exporter either bakes in for one size or re-derives from a different formula; depthcli computes
it exactly, once per patch grid (``model/position_encoding.py`` caches it), and feeds it in. So:

- one dynamic model, ``image (B, 3, H, W)`` + ``position (1, 1 + H/14 * W/14, C)`` -> depth
  ``(B, H, W)`` (and the other outputs ``Traits.outputs`` names, e.g. DA3's sky), serves every
  size (no re-export per shape);
- the graph skips the per-call resize a traced copy of it would redo every frame.

The wrapper does not touch the caller's model: it works on shallow copies whose
``position_encoding`` slot is a module returning the input tensor.
"""
from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ...model.configs import PATCH_SIZE

EXAMPLE_HW = (28, 42)  # any multiple of 14 works; small keeps tracing fast (shapes stay dynamic)


class _PositionInput(nn.Module):
    """Stands in for ``PositionEncoding``: returns the tensor the wrapper was given."""

    def __init__(self) -> None:
        super().__init__()
        self.value: torch.Tensor | None = None

    def forward(self, grid_h: int, grid_w: int, dtype: torch.dtype) -> torch.Tensor:  # noqa: ARG002
        assert self.value is not None
        return self.value


def _with_child(module: nn.Module, name: str, child: nn.Module) -> nn.Module:
    """A shallow copy of ``module`` whose submodule ``name`` is ``child`` (parameters shared,
    the original left as it was)."""
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    clone._modules[name] = child
    return clone


class PositionFedModel(nn.Module):
    """``forward(image_bchw, position_1nc) -> depth_bhw`` (or a tuple: depth first): the
    network's forward with the position encoding supplied by the caller. Every family keeps its
    DINOv2 encoder as ``model.encoder``, with the shared ``PositionEncoding``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.position = _PositionInput()
        encoder = _with_child(model.encoder, "position_encoding", self.position)
        self.net = _with_child(model, "encoder", encoder)

    @contextmanager
    def fed(self, position_1nc: torch.Tensor) -> Iterator[nn.Module]:
        """The network, its position encoding ``position_1nc`` while the block runs (any of its
        methods: subclasses trace ``encode`` alone, see ``openvino_temporal_graph``)."""
        self.position.value = position_1nc
        try:
            yield self.net
        finally:
            self.position.value = None

    def forward(self, image_bchw: torch.Tensor, position_1nc: torch.Tensor) -> torch.Tensor:
        with self.fed(position_1nc) as net:
            return net(image_bchw)


def position_encoding(model: nn.Module, grid_h: int, grid_w: int) -> torch.Tensor:
    """The exact (1, 1 + grid_h * grid_w, C) float32 encoding the torch model adds (cached)."""
    with torch.inference_mode():
        return model.encoder.position_encoding(grid_h, grid_w, torch.float32)


def position_table(model: nn.Module) -> Any:
    """The learned (1, 1 + n*n, C) table as float32 NumPy: what ``runtime/position`` resizes."""
    return model.encoder.position_encoding.table.detach().to("cpu", torch.float32).numpy().copy()


def float_cpu_model(model: nn.Module) -> nn.Module:
    """The model itself when it is already float32 on the CPU, else a converted copy (the graph
    is always stored in float32; the precision is chosen when it is compiled)."""
    param = next(model.parameters())
    if param.dtype == torch.float32 and param.device.type == "cpu":
        return model
    return copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()


def convert(model: nn.Module) -> tuple[Any, float]:
    """(openvino.Model with dynamic batch, height, width and token count; seconds it took).
    Outputs are named after ``model.config.traits.outputs``."""
    import openvino as ov

    model = float_cpu_model(model)
    embed_dim = model.config.encoder.embed_dim
    h, w = EXAMPLE_HW
    example = (torch.zeros(1, 3, h, w), position_encoding(model, h // PATCH_SIZE, w // PATCH_SIZE).clone())
    inputs = {"image": ov.PartialShape([-1, 3, -1, -1]), "position": ov.PartialShape([1, -1, embed_dim])}
    return trace(PositionFedModel(model), example, inputs, model.config.traits.outputs)


def trace(module: nn.Module, example: tuple[torch.Tensor, ...], inputs: dict[str, Any],
          outputs: Sequence[str]) -> tuple[Any, float]:
    """``module`` traced into an openvino.Model whose inputs (in order, with the given
    ``openvino.PartialShape``s: -1 marks a dynamic dimension) and outputs carry these names;
    seconds it took. Python ints that come from tensor shapes stay shape arithmetic in the
    graph; any other Python value is baked in as a constant."""
    from . import openvino_converter

    convert_model = openvino_converter()
    t0 = time.perf_counter()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
        ov_model = convert_model(module.eval(), example_input=example, input=list(inputs.values()))
    for port, name in zip(ov_model.inputs, inputs, strict=True):
        port.get_tensor().set_names({name})
    for port, name in zip(ov_model.outputs, outputs, strict=True):
        port.get_tensor().set_names({name})
    return ov_model, time.perf_counter() - t0


def recipe(model: nn.Module) -> dict[str, Any]:
    """What a run needs to know about the converted graph besides the graph (stored in the
    cache entry's meta.json): the family config, its inputs and outputs."""
    return {"config": model.config.to_dict(), "inputs": ["image", "position"],
            "outputs": list(model.config.traits.outputs), "embed_dim": model.config.encoder.embed_dim,
            "parameters": sum(p.numel() for p in model.parameters())}
