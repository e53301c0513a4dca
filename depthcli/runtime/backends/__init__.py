"""Inference backends: what runs the network between preprocessing and the postprocessing.

- ``torch``: depthcli's own PyTorch model, the reference. Every device (CPU, CUDA, MPS), every
  precision.
- ``openvino``: the same model converted once with ``openvino.convert_model`` (cached on disk,
  see ``openvino_cache.py``) and compiled for the CPU. Faster than torch on the CPU with the
  same results (max relative error ~1e-6 in float32), and the fastest bf16 on CPUs with
  AVX512-BF16/AMX. A converted model runs without importing torch at all.

Both have the same small interface (``Backend``), so the predictor, pipelining, video and
webcam code does not care which one runs. ``choose_backend`` turns ``--backend auto|torch|
openvino`` (or ``$DEPTHCLI_BACKEND``) and the device into a name: ``auto`` is OpenVINO on the
CPU whenever it can be imported, torch otherwise and always on CUDA/MPS.

No torch here: this module is on the cached-model path.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, Protocol

BACKEND_ENV = "DEPTHCLI_BACKEND"
CHOICES = ("auto", "torch", "openvino")
INSTALL_HINT = "pip install openvino"
PRECISION_NAMES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


class BackendUnavailable(ValueError):
    """The backend asked for cannot run here (not installed, or not on this device): a usage
    error, not a crash."""


class Backend(Protocol):
    name: str  # "torch" or "openvino"
    device: str  # where it runs: "cpu", "cuda:0", "mps"
    dtype: str  # the precision the network computes in: "float32", "bfloat16", "float16"
    notes: list[str]  # one-line messages for the user (conversion time, ...), said once

    def to_input(self, input_bchw: Any) -> Any:
        """The normalised float32 (B, 3, H, W) NumPy batch, staged for ``run`` (moved to the
        device / cast; synchronised, so the time it takes is not counted as the forward's)."""

    def run(self, staged: Any) -> dict[str, Any]:
        """The network's outputs by name (``Traits.outputs``), each (B, H, W) at the network
        resolution, finished (synchronised): NumPy float32 on the CPU, device tensors on a GPU."""

    def describe(self) -> str:
        """e.g. ``openvino cpu bf16``: what the per-image line and the summary name."""


def requested_backend(requested: str | None) -> str:
    """``--backend`` if given, else ``$DEPTHCLI_BACKEND``, else ``auto``; validated."""
    name = (requested or os.environ.get(BACKEND_ENV) or "auto").strip().lower()
    if name not in CHOICES:
        source = "--backend" if requested else f"${BACKEND_ENV}"
        raise BackendUnavailable(f"{source}: unknown backend {name!r}; choose one of {', '.join(CHOICES)}")
    return name


OPENVINO_TOOLS = "openvino.tools.ovc"


def import_openvino() -> Any:
    """The ``openvino`` module, imported without its model-conversion tools when this process
    has not imported it yet. ``import openvino`` also imports ``openvino.tools.ovc`` (and with
    it the telemetry client, urllib, http and email: 0.09 s of its 0.14 s) for the one function
    it re-exports, ``convert_model``, which only a first conversion needs; openvino's own
    ``__init__`` treats those tools as optional, so they are left out here and brought in by
    ``openvino_converter`` when a conversion runs. Raises what the import raises."""
    if sys.modules.get("openvino") is not None:
        return sys.modules["openvino"]
    blocked = OPENVINO_TOOLS not in sys.modules
    if blocked:
        sys.modules[OPENVINO_TOOLS] = None  # an ImportError for openvino's optional import
    try:
        import openvino
    finally:
        if blocked and sys.modules.get(OPENVINO_TOOLS, 0) is None:
            del sys.modules[OPENVINO_TOOLS]
    return openvino


def openvino_converter() -> Callable[..., Any]:
    """``openvino.convert_model``, importing the conversion tools that ``import_openvino`` left
    out (and putting the function back where openvino's namespace has it)."""
    ov = import_openvino()
    if not hasattr(ov, "convert_model"):
        from openvino.tools.ovc import convert_model

        ov.convert_model = convert_model
    return ov.convert_model


def openvino_import_error() -> str | None:
    """None when ``import openvino`` works, else the reason in a few words."""
    try:
        import_openvino()
    except ImportError as e:
        return str(e).splitlines()[0] if str(e) else "not installed"
    except Exception as e:  # noqa: BLE001 - a broken install raises anything; still "not usable"
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'import failed'}"
    return None


def choose_backend(requested: str | None, device_type: str, *, device_was_explicit: bool = True
                   ) -> tuple[str, str | None]:
    """(backend name, a one-line note or None) for ``--backend requested`` on a device of
    ``device_type`` ("cpu", "cuda", "mps").

    ``auto``: OpenVINO on the CPU when importable (else torch, with a note saying how to get the
    fast path); torch on CUDA/MPS. ``openvino`` explicitly: an error when it is not installed, or
    when a GPU device was asked for explicitly (it runs on the CPU here).
    """
    name = requested_backend(requested)
    if name == "torch":
        return "torch", None
    if name == "auto":
        if device_type != "cpu":
            return "torch", None
        reason = openvino_import_error()
        if reason is None:
            return "openvino", None
        return "torch", (f"openvino is not available ({reason}): running the slower torch backend "
                         f"on the CPU ({INSTALL_HINT} for the fast path)")
    if device_type != "cpu" and device_was_explicit:
        raise BackendUnavailable(f"--backend openvino runs on the CPU, not {device_type}; "
                                 f"use --device cpu or --backend torch")
    reason = openvino_import_error()
    if reason is not None:
        raise BackendUnavailable(f"--backend openvino: openvino cannot be imported ({reason}); "
                                 f"install it with `{INSTALL_HINT}` or use --backend torch")
    return "openvino", None


def precision_name(dtype: Any) -> str:
    """``fp32`` / ``bf16`` / ``fp16`` for a dtype name ("float32") or a torch dtype."""
    text = str(dtype).removeprefix("torch.")
    return PRECISION_NAMES.get(text, text)
