"""Device and precision choice."""
from __future__ import annotations

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """``auto`` (or None): CUDA, then Apple MPS, then CPU. An explicit device that is not there
    raises a ValueError naming what is available."""
    if requested is None or str(requested) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but no CUDA device is available (use --device cpu)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("MPS was requested but is not available on this machine (use --device cpu)")
    return device


def pick_dtype(requested: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if requested is None:
        return torch.float32
    if isinstance(requested, torch.dtype):
        dtype = requested
    else:
        if requested not in DTYPES:
            raise ValueError(f"unknown precision {requested!r}; choose one of {', '.join(DTYPES)}")
        dtype = DTYPES[requested]
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("fp16 is not supported on the CPU (slow and inexact there); use --bf16")
    return dtype


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 / AMX on x86, BF16 on Arm);
    without it bf16 is emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16", "bf16"))


def resolve_precision(requested: str | None, device: torch.device) -> tuple[str | None, str | None]:
    """(precision to run, a one-line note or None) for the CLI's --fp16/--bf16 on ``device``.

    fp16 is a GPU precision: on the CPU (a laptop running the README's ``--fp16`` example) it
    becomes the CPU's own reduced precision, bf16 where the CPU computes it natively, else fp32,
    and says so instead of failing. Everything else is passed through (``pick_dtype`` checks it).
    """
    if requested != "fp16" or device.type != "cpu":
        return requested, None
    if cpu_has_bf16():
        return "bf16", "--fp16 is for CUDA/MPS; on this CPU running bf16, its reduced precision"
    return None, "--fp16 is for CUDA/MPS and this CPU has no native bf16: running fp32"
