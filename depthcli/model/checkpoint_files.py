"""Which files of a checkpoint folder hold its weights (no torch: the fingerprint and the
cached-model path use it without loading anything)."""
from __future__ import annotations

import json
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import CheckpointError


def weight_files(folder: Path) -> list[Path]:
    """The weight files depthcli reads from a transformers-layout folder: the shards its
    ``model.safetensors.index.json`` names (each inside the folder), else ``model.safetensors``,
    else ``pytorch_model.bin``. What the model is read from, and what its fingerprint hashes."""
    index = folder / "model.safetensors.index.json"
    if index.exists():
        return _shard_files(folder, index)
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).exists():
            return [folder / name]
    raise CheckpointError(f"{folder}: folder has no model.safetensors or pytorch_model.bin")


def _shard_files(folder: Path, index: Path) -> list[Path]:
    """The files a ``model.safetensors.index.json`` names, each proven to lie inside ``folder``.

    Names with ``..``, absolute paths and symlinks out of the folder are refused: an index must
    not make depthcli read arbitrary files. One exception, the Hugging Face cache layout: a
    snapshot (``<repo>/snapshots/<rev>/``) holds symlinks into ``<repo>/blobs/``.
    """
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index}: unreadable shard index ({e})") from e
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index}: unreadable shard index (weight_map is not a map of names to files)")
    root = folder.resolve()
    allowed = [root]
    if root.parent.name == "snapshots":
        allowed.append(root.parent.parent / "blobs")
    shards = []
    for name in sorted(set(weight_map.values())):
        posix, windows = PurePosixPath(name), PureWindowsPath(name)
        if not name or posix.is_absolute() or windows.anchor or ".." in posix.parts or ".." in windows.parts:
            raise CheckpointError(f"{index}: weight map names {name!r}, not a file inside the folder")
        target = (folder / name).resolve()
        if not any(target.is_relative_to(base) for base in allowed):
            raise CheckpointError(f"{index}: weight map entry {name!r} is a symlink out of the folder (to {target})")
        shards.append(folder / name)
    return shards
