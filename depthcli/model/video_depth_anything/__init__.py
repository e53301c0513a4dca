"""Video Depth Anything (VDA): Depth Anything V2's DINOv2 encoder and DPT head with four temporal
"motion modules" that let the frames of a clip see each other, plus the original's two ways of
running a long video: overlapping 32-frame windows aligned to each other (``schedule.WindowPlanner``
/ ``WindowAligner``) and a streaming mode with cached temporal states (``schedule.StreamCache``).

Reference: DepthAnything/Video-Depth-Anything (Apache-2.0), reimplemented; the tests compare
against the original code.

Imported lazily: ``config`` and ``schedule`` are torch-free (NumPy only) and must stay importable
without torch, like ``depthcli.model.configs``.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "VDAConfig": ".config", "network_size_rule": ".config",
    "VideoDepthAnything": ".model",
    "WindowPlanner": ".schedule", "WindowAligner": ".schedule", "Window": ".schedule",
    "StreamCache": ".schedule", "ContextSlots": ".schedule",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
