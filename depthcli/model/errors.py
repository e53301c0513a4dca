"""The checkpoint error, apart from the torch code that raises it, so doors and the torch-free
runtime path can catch it without importing torch."""
from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit a supported model."""
