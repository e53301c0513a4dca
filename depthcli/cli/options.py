"""Options shared by the image, video and webcam commands, and turning them into a predictor."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from ..runtime.spec import DEFAULT_MODEL_ENV  # plain data, no torch: --help stays instant
from . import exit_codes
from .errors import CliError, is_out_of_memory, print_debug_traceback


def model_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--model, --model-version, --device, --fp16/--bf16, --size, --max-side, handed to the
    command as ONE keyword argument ``spec`` (a ``runtime.spec.PredictorSpec``), so an option
    added here (and as a field of PredictorSpec, same name) reaches every command, the cluster
    workers and the server without touching them."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import dataclasses

        from ..runtime.spec import PredictorSpec

        values = {field.name: kwargs.pop(field.name) for field in dataclasses.fields(PredictorSpec)}
        if values["model_version"] is not None:
            values["model_version"] = int(values["model_version"])
        spec = PredictorSpec(**values)
        problem = spec.backend_device_problem()
        if problem:  # before anything runs, on every machine alike
            raise click.UsageError(problem)
        return fn(*args, spec=spec, **kwargs)

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
        click.option("--size", type=click.IntRange(min=14), default=None,
                     help="Network input size in pixels (rounded to multiples of 14): the shorter side, "
                          "default 518; for Depth Anything 3 models the longer side, default 504."),
        click.option("--max-side", type=click.IntRange(min=14), default=None,
                     help="Cap the longer network-input side (thin panoramas otherwise blow up)."),
        click.option("--backend", type=click.Choice(["auto", "torch", "openvino"]), default=None,
                     help="What runs the network: openvino (CPU, fastest there), torch (any device). "
                          "Default: $DEPTHCLI_BACKEND or auto (openvino on the CPU when installed)."),
        click.option("--batch", type=click.IntRange(min=1), default=None,
                     help="Images or frames of one network size per forward pass (the same depth as one "
                          "at a time: bit for bit on OpenVINO, to float rounding on torch). Default: 4 on "
                          "CUDA, 1 on the CPU (where batching only adds latency)."),
    ]
    for deco in reversed(decorators):
        wrapper = deco(wrapper)
    return wrapper


def load_predictor(spec):  # noqa: ANN001, ANN201 - PredictorSpec -> DepthPredictor, imported lazily
    """Build the predictor, mapping each failure to its exit code and one line."""
    from ..model import CheckpointError
    from ..runtime.backends import BackendUnavailable
    from ..runtime.loading import DeviceError, build_predictor

    try:
        predictor = build_predictor(spec)
        say_licence(spec)
        ctx = click.get_current_context(silent=True)
        if not (ctx and ctx.params.get("quiet")):  # -q: errors only
            for note in predictor.notes:  # backend fallback, --fp16 on a CPU, first-use conversion
                click.echo(f"depthcli: note: {note}", err=True)
        return predictor
    except BackendUnavailable as e:
        raise CliError(str(e), exit_codes.USAGE) from None
    except DeviceError as e:
        raise CliError(str(e), exit_codes.DEVICE) from None
    except CheckpointError as e:
        print_debug_traceback()
        raise CliError(str(e), exit_codes.MODEL) from None
    except (RuntimeError, MemoryError) as e:
        if is_out_of_memory(e):
            raise CliError(f"out of memory loading {spec.source} on {spec.device}", exit_codes.DEVICE) from None
        raise


def say_licence(spec) -> None:  # noqa: ANN001 - PredictorSpec
    """The licence of a non-commercial model, once per run, wherever the model runs: here
    (``load_predictor`` says it) or on Ray's workers (the --ray paths call this). Registry names,
    and paths whose identity the registry knows (published file names, the Hugging Face cache,
    what ``depthcli convert`` recorded)."""
    from ..hub import registry

    registry.print_licence_notice(spec.source)


def require_ray_installed() -> None:
    """--ray without Ray installed is a usage error that says how to install it."""
    from ..cluster import RayUnavailable, require_ray

    try:
        require_ray()
    except RayUnavailable as e:
        raise click.UsageError(str(e)) from None


def cluster_error(exc) -> click.ClickException:  # noqa: ANN001 - cluster.ClusterFailure
    """A cluster run that cannot go on, as the exit code its ``kind`` means (3 model, 2 usage,
    4 device or no cluster)."""
    if exc.kind == "usage":
        return click.UsageError(str(exc))
    return CliError(str(exc), {"model": exit_codes.MODEL}.get(exc.kind, exit_codes.DEVICE))


def with_handled_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .errors import handle_errors

        with handle_errors():
            return fn(*args, **kwargs)

    return wrapper


def given(name: str, *, from_env: bool = False) -> bool:
    """Whether the user gave option ``name`` (the parameter's name) on the command line (or, with
    ``from_env``, in its environment variable) rather than leaving its default: an option that
    cannot apply is refused, but only when it was asked for."""
    from click.core import ParameterSource

    source = click.get_current_context().get_parameter_source(name)
    return source == ParameterSource.COMMANDLINE or (from_env and source == ParameterSource.ENVIRONMENT)


def refuse_unused(flags: list[str], where: str) -> None:
    """A usage error for options that do nothing here: ``--focal applies only to --format ply``
    (``apply`` for several). Nothing when ``flags`` is empty."""
    if flags:
        verb = "applies" if len(flags) == 1 else "apply"
        raise click.UsageError(f"{', '.join(flags)} {verb} only {where}")
