"""Depth Anything 3 (ByteDance-Seed/Depth-Anything-3), the single-image depth presets.

``config`` (``DA3Config``, ``PRESETS``) and ``postprocess`` (sky fill, metric scaling) are plain
Python/NumPy and stay importable without torch; ``DepthAnything3`` (the network) and
``checkpoint`` (reading the published layout) are imported on first use.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from .config import PRESETS, DA3Config

_LAZY = {"DepthAnything3": ".model"}

__all__ = ["PRESETS", "DA3Config", *_LAZY]


def __getattr__(name: str) -> Any:  # noqa: ANN401
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
