"""Options shared by the image, video and webcam commands, and turning them into a predictor."""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import click

from . import exit_codes
from .errors import CliError, is_out_of_memory, print_debug_traceback

DEFAULT_MODEL_ENV = "DEPTHCLI_MODEL"


def model_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--model, --model-version, --device, --fp16/--bf16, --size, --max-side."""
    decorators = [
        click.option("-m", "--model", "model", metavar="NAME|PATH", default=None,
                     help=f"Registry name (see `depthcli models`) or checkpoint path: original .pth, "
                          f"transformers folder, or depthcli .safetensors. Default: ${DEFAULT_MODEL_ENV} "
                          f"or v2-small."),
        click.option("--model-version", type=click.Choice(["1", "2"]), default=None,
                     help="Depth-Anything version when the file name does not tell."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto",
                     show_default=True),
        click.option("--fp16", "precision", flag_value="fp16", help="Half precision (CUDA/MPS)."),
        click.option("--bf16", "precision", flag_value="bf16", help="bfloat16 (CPU with AVX512-BF16/AMX, CUDA)."),
        click.option("--size", type=click.IntRange(min=14), default=518, show_default=True,
                     help="Shorter side of the network input, in pixels (rounded to multiples of 14)."),
        click.option("--max-side", type=click.IntRange(min=14), default=None,
                     help="Cap the longer network-input side (thin panoramas otherwise blow up)."),
    ]
    for deco in reversed(decorators):
        fn = deco(fn)
    return fn


def model_source(model: str | None) -> str:
    if model:
        return model
    env = os.environ.get(DEFAULT_MODEL_ENV)
    if env:
        return env
    from ..hub.registry import DEFAULT_MODEL

    return DEFAULT_MODEL


def load_predictor(*, model: str | None, model_version: str | None, device: str, precision: str | None,
                   size: int, max_side: int | None):  # noqa: ANN201 - DepthPredictor, imported lazily
    """Build the predictor, mapping each failure to its exit code and one line."""
    from ..model import CheckpointError
    from ..runtime.device import pick_device, pick_dtype
    from ..runtime.loading import load_model
    from ..runtime.predictor import DepthPredictor

    try:
        dev = pick_device(device)
        dt = pick_dtype(precision, dev)
    except ValueError as e:
        raise CliError(str(e), exit_codes.DEVICE) from None
    source = model_source(model)
    try:
        net = load_model(source, version=int(model_version) if model_version else None, device=dev, dtype=dt)
    except CheckpointError as e:
        print_debug_traceback()
        raise CliError(str(e), exit_codes.MODEL) from None
    except (RuntimeError, MemoryError) as e:
        if is_out_of_memory(e):
            raise CliError(f"out of memory loading {source} on {dev}", exit_codes.DEVICE) from None
        raise
    from ..runtime.threads import configure_threads

    configure_threads(dev)
    return DepthPredictor(net, size=size, max_side=max_side)


def with_handled_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .errors import handle_errors

        with handle_errors():
            return fn(*args, **kwargs)

    return wrapper
