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
