"""Published Depth-Anything models by short name, and where they sit in the local cache.

Pure data plus cheap cache look-ups: no torch, no network, so ``depthcli models`` stays
instant. Downloading lives in :mod:`depthcli.hub.download`.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

DEFAULT_MODEL = "v2-small"
MODEL_ENV = "DEPTHCLI_MODEL"  # overrides DEFAULT_MODEL: a registry name or a checkpoint path
REVISION = "main"
# The only files fetched: the config says V1/V2 and metric/relative, the weights are safetensors.
# Pickled ``.bin`` weights are never downloaded.
FILES = ("config.json", "model.safetensors")

APACHE = "Apache-2.0"
CC_BY_NC = "CC-BY-NC-4.0"

_ENCODER_WORD = {"vits": "Small", "vitb": "Base", "vitl": "Large"}
_DOWNLOAD_MB = {"vits": 99, "vitb": 390, "vitl": 1340}  # fp32 safetensors, as published
_METRIC = {"indoor": ("Indoor", 20.0), "outdoor": ("Outdoor", 80.0)}  # Hypersim, Virtual KITTI 2


@dataclass(frozen=True)
class ModelEntry:
    """One published checkpoint: where it lives on the hub and what it may be used for."""

    name: str
    repo_id: str
    version: int  # 1 or 2
    encoder: str  # vits, vitb or vitl
    max_depth: float | None  # metres for metric models, None for relative (inverse) depth
    licence: str
    commercial_use: bool
    download_mb: int  # approximate size of model.safetensors

    @property
    def metric(self) -> bool:
        return self.max_depth is not None

    @property
    def size_word(self) -> str:
        return _ENCODER_WORD[self.encoder]


def _entry(name: str, repo_id: str, version: int, encoder: str, max_depth: float | None = None) -> ModelEntry:
    # Only V1 and the V2 Small models are Apache-2.0; V2 Base/Large (relative and metric) are not.
    free = version == 1 or encoder == "vits"
    return ModelEntry(name, repo_id, version, encoder, max_depth, APACHE if free else CC_BY_NC, free,
                      _DOWNLOAD_MB[encoder])


def _build() -> dict[str, ModelEntry]:
    models: dict[str, ModelEntry] = {}
    sizes = {"small": "vits", "base": "vitb", "large": "vitl"}
    for size, enc in sizes.items():
        models[f"v1-{size}"] = _entry(f"v1-{size}", f"LiheYoung/depth-anything-{size}-hf", 1, enc)
    for size, enc in sizes.items():
        word = _ENCODER_WORD[enc]
        models[f"v2-{size}"] = _entry(f"v2-{size}", f"depth-anything/Depth-Anything-V2-{word}-hf", 2, enc)
    for scene, (scene_word, metres) in _METRIC.items():
        for size, enc in sizes.items():
            name = f"v2-metric-{scene}-{size}"
            repo = f"depth-anything/Depth-Anything-V2-Metric-{scene_word}-{_ENCODER_WORD[enc]}-hf"
            models[name] = _entry(name, repo, 2, enc, metres)
    return models


MODELS: dict[str, ModelEntry] = _build()


# ----------------------------------------------------------------------------------- look-ups
def default_model_name() -> str:
    """``$DEPTHCLI_MODEL`` if set (a name or a path), else ``v2-small``: the small, Apache-2.0 V2."""
    return os.environ.get(MODEL_ENV, "").strip() or DEFAULT_MODEL


def get_entry(name: str) -> ModelEntry:
    """The entry for ``name``; a KeyError that lists close names when there is none."""
    try:
        return MODELS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, MODELS, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(MODELS)}"
        raise KeyError(f"unknown model name {name!r} ({hint})") from None


# ----------------------------------------------------------------------------------- licences
_noticed: set[str] = set()


def licence_notice(name: str) -> str | None:
    """The one-line licence warning for a non-commercial model, None for permissive ones."""
    entry = MODELS.get(name)
    if entry is None or entry.commercial_use:
        return None
    return (f"{name} ({entry.repo_id}) is licensed {entry.licence}: non-commercial use only "
            f"(v2-small and the v1 models are Apache-2.0)")


def print_licence_notice(name: str, file: TextIO | None = None) -> None:
    """Print ``licence_notice(name)`` to stderr, once per model per run (commands call it freely)."""
    text = licence_notice(name)
    if text is None or name in _noticed:
        return
    _noticed.add(name)
    print(f"depthcli: note: {text}", file=file or sys.stderr)


# ----------------------------------------------------------------------------------- cache
def cached_snapshot(name: str) -> Path | None:
    """The cached snapshot folder holding all of ``FILES`` for ``name``, without any network.

    Reads the standard Hugging Face cache (``$HF_HOME/hub``, ``$HF_HUB_CACHE``), so a model
    downloaded by transformers counts too. A half-finished download (config but no weights)
    is not a cached model.
    """
    from huggingface_hub import try_to_load_from_cache

    entry = get_entry(name)
    found = [try_to_load_from_cache(entry.repo_id, f, revision=REVISION) for f in FILES]
    if not all(isinstance(p, str) for p in found):
        return None
    folders = {Path(p).parent for p in found}  # type: ignore[arg-type]
    return folders.pop() if len(folders) == 1 else None


def size_on_disk(folder: Path) -> int:
    """Bytes used by ``FILES`` in a snapshot folder (following the cache's blob symlinks)."""
    return sum((folder / f).stat().st_size for f in FILES if (folder / f).exists())


def cache_dir() -> Path:
    """Where the Hugging Face hub cache is, as huggingface_hub resolved it from the environment."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)
