"""Device and precision choice, as plain strings ("cpu", "cuda", "mps"; "float32", "bfloat16",
"float16").

torch is imported only where a GPU could answer: ``--device auto`` on a machine without an
NVIDIA/AMD driver and outside macOS is the CPU without asking torch, so a cached OpenVINO model
starts without importing it (2-4 s saved per call).
"""
from __future__ import annotations

import glob
import sys
from typing import Any

PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def gpu_possible() -> bool:
    """Whether torch could find a GPU here at all: an NVIDIA (``/dev/nvidia*``) or AMD ROCm
    (``/dev/kfd``) driver, or macOS (Apple MPS). False answers ``--device auto`` without torch."""
    return sys.platform == "darwin" or bool(glob.glob("/dev/nvidia[0-9]*")) or bool(glob.glob("/dev/kfd"))


def pick_device(requested: Any = None) -> str:
    """``auto`` (or None): CUDA, then Apple MPS, then CPU. An explicit device that is not there
    raises a ValueError naming what is available. Accepts a ``torch.device`` too."""
    text = "auto" if requested is None else str(requested)
    if text == "cpu" or (text == "auto" and not gpu_possible()):
        return "cpu"
    import torch

    if text == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    device = torch.device(text)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but no CUDA device is available (use --device cpu)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("MPS was requested but is not available on this machine (use --device cpu)")
    return str(device)


def device_type(device: str) -> str:
    """``cuda`` for ``cuda:1``."""
    return str(device).split(":")[0]


def pick_dtype(requested: Any, device: str) -> str:
    """The dtype name for ``--fp16``/``--bf16`` (None: float32). Accepts a torch dtype too."""
    if requested is None:
        return "float32"
    text = str(requested).removeprefix("torch.")
    name = PRECISIONS.get(text, text)
    if name not in PRECISIONS.values():
        raise ValueError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    if name == "float16" and device_type(device) == "cpu":
        raise ValueError("fp16 is not supported on the CPU (slow and inexact there); use --bf16")
    return name


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 / AMX on x86, BF16 on Arm);
    without it bf16 is emulated and slower than float32. Read from the CPU's flags; torch's own
    answer when torch is already loaded."""
    if "torch" in sys.modules:
        try:
            return bool(sys.modules["torch"].ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            pass
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16", "bf16"))


def resolve_precision(requested: str | None, device: str) -> tuple[str | None, str | None]:
    """(precision to run, a one-line note or None) for the CLI's --fp16/--bf16 on ``device``.

    fp16 is a GPU precision: on the CPU (a laptop running the README's ``--fp16`` example) it
    becomes the CPU's own reduced precision, bf16 where the CPU computes it natively, else fp32,
    and says so instead of failing. Everything else is passed through (``pick_dtype`` checks it).
    """
    if requested != "fp16" or device_type(device) != "cpu":
        return requested, None
    if cpu_has_bf16():
        return "bf16", "--fp16 is for CUDA/MPS; on this CPU running bf16, its reduced precision"
    return None, "--fp16 is for CUDA/MPS and this CPU has no native bf16: running fp32"


def torch_dtype(name: str) -> Any:
    """The torch dtype for a dtype name (imports torch: for the torch backend only)."""
    import torch

    return getattr(torch, name)
