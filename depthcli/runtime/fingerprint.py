"""Content fingerprints of checkpoints: what the converted-model cache (and output metadata)
are keyed by.

A checkpoint is known by the sha256 of its bytes, not its path or name: the same weights under
another name share one cache entry, and a file replaced in place never hits a stale one. Hashing
runs at ~2 GB/s (vitl's 1.3 GB: under a second), and is memoised per (path, size, mtime_ns) so a
long-lived process (server, cluster worker) pays it once per file version.
"""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

CHUNK_BYTES = 4 * 2**20

_memo: dict[tuple[str, int, int], str] = {}
_memo_lock = threading.Lock()


def file_sha256(path: str | Path, *, memo: bool = True) -> str:
    """Hex sha256 of a file's bytes, memoised per (resolved path, size, mtime_ns).
    ``memo=False`` always reads the file: for integrity checks, where a change within the file
    system's timestamp granularity (a few ms) must not go unnoticed."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    with _memo_lock:
        if memo and key in _memo:
            return _memo[key]
    digest = hashlib.sha256()
    with open(real, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    hexdigest = digest.hexdigest()
    with _memo_lock:
        _memo[key] = hexdigest
    return hexdigest


def checkpoint_files(path: str | Path) -> list[Path]:
    """The files whose bytes make up a checkpoint: the file itself, or for a transformers-layout
    folder its config.json and the weight files depthcli reads from it (the sharded index and its
    shards, else model.safetensors, else pytorch_model.bin). Other files in the folder (README,
    images, optimizer states) do not change the model and are ignored."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    from ..model.checkpoint_files import weight_files
    from ..model.errors import CheckpointError

    files = [path / "config.json"] if (path / "config.json").is_file() else []
    index = path / "model.safetensors.index.json"
    if index.is_file():
        files.append(index)
    try:
        return files + [f for f in weight_files(path) if f.is_file()]
    except CheckpointError:  # a folder the loader refuses: nothing more to hash
        return files


def checkpoint_sha256(path: str | Path) -> str:
    """One hex sha256 for a checkpoint file (its file_sha256) or folder (a digest over the
    names and sha256s of its checkpoint_files)."""
    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    digest = hashlib.sha256(b"depthcli-checkpoint-folder\n")
    for file in checkpoint_files(path):
        digest.update(f"{file.name}\t{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def tensors_sha256(state: dict) -> str:
    """sha256 over a state dict's names, dtypes, shapes and bytes: the fingerprint of a model
    that was built in memory rather than read from one file (the Python API's models)."""
    import torch

    digest = hashlib.sha256(b"depthcli-state-dict\n")
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}\t{tensor.dtype}\t{tuple(tensor.shape)}\n".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()
