"""The network families depthcli runs, as data: each family's package under ``depthcli.model``
and its torch-free config class. What the runtime needs to rebuild a config from its
``to_dict()`` (the converted-model cache and the checkpoint memo store that form) without
importing torch or reading the checkpoint.

A family package keeps the same file set: ``config.py`` (torch-free, the config with its
``traits``), ``model.py`` (the network), ``checkpoint.py`` (its on-disk layouts); Depth Anything
V1/V2 keeps its config in ``model/configs.py`` as the first family.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import CheckpointError

CONFIG_CLASSES = {  # family -> (module, class): torch-free modules only
    "depth_anything": ("depthcli.model.configs", "ModelConfig"),
    "depth_anything_3": ("depthcli.model.depth_anything_3.config", "DA3Config"),
    "video_depth_anything": ("depthcli.model.video_depth_anything.config", "VDAConfig"),
}


NETWORK_CLASSES = {  # family -> (module, class): the torch networks
    "depth_anything": ("depthcli.model.depth_anything.model", "DepthAnything"),
    "depth_anything_3": ("depthcli.model.depth_anything_3.model", "DepthAnything3"),
    "video_depth_anything": ("depthcli.model.video_depth_anything.model", "VideoDepthAnything"),
}


def _class(table: dict[str, tuple[str, str]], family: str) -> Any:
    try:
        module, name = table[family]
    except KeyError:
        raise CheckpointError(f"unknown model family {family!r}") from None
    return getattr(import_module(module), name)


def network_class(family: str) -> Any:
    """The torch module class that builds a ``family`` network from its config."""
    return _class(NETWORK_CLASSES, family)


def config_class(family: str) -> Any:
    """The family's config class (torch-free)."""
    return _class(CONFIG_CLASSES, family)


def config_from_dict(data: dict[str, Any]) -> Any:
    """The family config that ``config.to_dict()`` wrote."""
    return config_class(data.get("family", "depth_anything")).from_dict(data)
