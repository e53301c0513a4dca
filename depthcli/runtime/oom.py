"""Running out of memory, told apart from other failures (light: no torch at import, so the
CLI's error handler can use it)."""
from __future__ import annotations


def is_out_of_memory(exc: BaseException) -> bool:
    """Host (MemoryError) or device (torch's RuntimeError "... out of memory") exhaustion."""
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def free_device_memory() -> None:
    """Give a failed allocation's cached blocks back, so the next input can still run."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
