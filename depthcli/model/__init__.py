"""The networks (pure torch) of every supported family and their checkpoint formats. No I/O
beyond reading weights, no printing.

Imported lazily: ``depthcli.model.configs`` and ``depthcli.model.errors`` are plain data and
must stay importable without torch (the runtime's cached-model path never imports it).
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import CheckpointError

_LAZY = {
    "Checkpoint": ".checkpoints", "build_model": ".checkpoints", "read_checkpoint": ".checkpoints",
    "save_safetensors": ".checkpoints",
    "ENCODERS": ".configs", "EncoderConfig": ".configs", "ModelConfig": ".configs", "Traits": ".configs",
    "DepthAnything": ".depth_anything",
    "VDAConfig": ".video_depth_anything.config", "VideoDepthAnything": ".video_depth_anything.model",
    "DepthAnything3": ".depth_anything_3.model", "DA3Config": ".depth_anything_3.config",
}

__all__ = ["CheckpointError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
