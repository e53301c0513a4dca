"""What depthcli learnt about a checkpoint the last time it read it: the sha256 of its bytes
and the config of the network it holds, so a run whose converted model is cached needs neither
to read the checkpoint nor to hash it.

The rule: a record is keyed by the checkpoint's path as given (its name can decide V1 vs V2)
and the options that change the config (``--model-version``); it holds every file's size and
modification time (ns) as they were when it was hashed. While all of them are unchanged the
recorded sha256 and config are used as they are. When any changed, the files are hashed again:
the same sha256 means the same weights (a copy, a touch), so the record is refreshed and still
used; another sha256 means other weights, and the checkpoint is read again from scratch. A file
rewritten in place within the file system's timestamp granularity with the same size is the
one change this cannot see (``--backend torch``, or deleting ``~/.cache/depthcli``, reads it).

Records live in ``~/.cache/depthcli/checkpoints/`` (``$XDG_CACHE_HOME``), one small JSON file
per checkpoint, written atomically; an unreadable record is ignored. No torch here.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backends.openvino_cache import cache_root, write_atomic
from .fingerprint import checkpoint_files, checkpoint_sha256

FORMAT = 1


@dataclass(frozen=True)
class Known:
    sha256: str
    config: dict[str, Any]  # the family config's to_dict()


def _record_path(path: Path, options: dict[str, Any]) -> Path:
    ident = json.dumps({"path": str(path.absolute()), "options": options}, sort_keys=True)
    return cache_root() / "checkpoints" / f"{hashlib.sha256(ident.encode()).hexdigest()[:32]}.json"


def _stats(path: Path) -> list[list[Any]] | None:
    try:
        return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in checkpoint_files(path)]
    except OSError:
        return None


def recall(path: Path, options: dict[str, Any]) -> Known | None:
    """The recorded sha256 and config of ``path`` when they still hold (see the module rule)."""
    record = _record_path(path, options)
    try:
        data = json.loads(record.read_text())
        known = Known(str(data["sha256"]), dict(data["config"]))
        recorded = data["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if data.get("format") != FORMAT:
        return None
    now = _stats(path)
    if now is None:
        return None
    if now == recorded:
        return known
    if checkpoint_sha256(path) != known.sha256:  # other weights: read the checkpoint again
        return None
    remember(path, options, known.sha256, known.config)  # same bytes, new times: keep using it
    return known


def remember(path: Path, options: dict[str, Any], sha256: str, config: dict[str, Any]) -> None:
    """Record what was learnt from reading ``path`` (best effort: a cache that cannot be
    written only costs the next run a read of the checkpoint)."""
    files = _stats(path)
    if files is None:
        return
    record = _record_path(path, options)
    data = {"format": FORMAT, "path": str(path.absolute()), "options": options, "files": files,
            "sha256": sha256, "config": config}
    with contextlib.suppress(OSError):
        record.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(record, json.dumps(data).encode("utf-8"))
