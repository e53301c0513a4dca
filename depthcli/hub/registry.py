"""Published models by short name (Depth Anything V1/V2, Depth Anything 3, Video Depth
Anything), and where they sit in the local cache.

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
# What is fetched of a transformers or Hub-mixin repo: the config says what the network is, the
# weights are safetensors; pickled ``.bin`` weights are never downloaded. Video Depth Anything
# publishes only its original ``.pth`` (read without unpickling objects, see model/archive.py).
FILES = ("config.json", "model.safetensors")

APACHE = "Apache-2.0"
CC_BY_NC = "CC-BY-NC-4.0"
FREE_ALTERNATIVES = "v2-small, the v1 and da3 models and vda-small are Apache-2.0"

_ENCODER_WORD = {"vits": "Small", "vitb": "Base", "vitl": "Large"}
_DOWNLOAD_MB = {"vits": 99, "vitb": 390, "vitl": 1340}  # fp32 safetensors, as published
_METRIC = {"indoor": ("Indoor", 20.0, "hypersim"), "outdoor": ("Outdoor", 80.0, "vkitti")}  # Hypersim, VKITTI 2
_SIZES = {"small": "vits", "base": "vitb", "large": "vitl"}


@dataclass(frozen=True)
class ModelEntry:
    """One published checkpoint: where it lives on the hub, what it is, what it may be used for.

    ``family`` is the network family's package (``model/families.py``); ``output`` how
    ``depthcli models`` describes what the values mean; ``published_files`` the file names the
    original projects release the same weights under (so a checkpoint given by path is known by
    its name, and its licence note follows it, see ``identify``)."""

    name: str
    repo_id: str
    family: str
    encoder: str  # vits, vitb or vitl
    output: str  # "relative", "metric 0-20 m", "relative depth", "metric (focal)"
    licence: str
    download_mb: int  # approximate size of the weights file
    files: tuple[str, ...] = FILES
    version: int | None = None  # Depth Anything 1 or 2
    max_depth: float | None = None  # metres, for metric models with a fixed range
    published_files: tuple[str, ...] = ()

    @property
    def commercial_use(self) -> bool:
        return self.licence == APACHE

    @property
    def metric(self) -> bool:
        return self.output.startswith("metric")

    @property
    def size_word(self) -> str:
        return _ENCODER_WORD[self.encoder]

    @property
    def family_label(self) -> str:
        """``V2``, ``DA3``, ``VDA``: the MODEL column of ``depthcli models``."""
        if self.family == "depth_anything":
            return f"V{self.version}"
        return {"depth_anything_3": "DA3", "video_depth_anything": "VDA"}.get(self.family, self.family)


def _depth_anything(name: str, repo_id: str, version: int, encoder: str, max_depth: float | None = None,
                    published: tuple[str, ...] = ()) -> ModelEntry:
    # Only V1 and the V2 Small models are Apache-2.0; V2 Base/Large (relative and metric) are not.
    free = version == 1 or encoder == "vits"
    output = f"metric 0-{max_depth:g} m" if max_depth else "relative"
    return ModelEntry(name, repo_id, "depth_anything", encoder, output, APACHE if free else CC_BY_NC,
                      _DOWNLOAD_MB[encoder], version=version, max_depth=max_depth, published_files=published)


def _build() -> dict[str, ModelEntry]:
    models: dict[str, ModelEntry] = {}
    for size, enc in _SIZES.items():
        models[f"v1-{size}"] = _depth_anything(f"v1-{size}", f"LiheYoung/depth-anything-{size}-hf", 1, enc,
                                               published=(f"depth_anything_{enc}14.pth",))
    for size, enc in _SIZES.items():
        word = _ENCODER_WORD[enc]
        models[f"v2-{size}"] = _depth_anything(f"v2-{size}", f"depth-anything/Depth-Anything-V2-{word}-hf", 2, enc,
                                               published=(f"depth_anything_v2_{enc}.pth",))
    for scene, (scene_word, metres, dataset) in _METRIC.items():
        for size, enc in _SIZES.items():
            name = f"v2-metric-{scene}-{size}"
            repo = f"depth-anything/Depth-Anything-V2-Metric-{scene_word}-{_ENCODER_WORD[enc]}-hf"
            models[name] = _depth_anything(name, repo, 2, enc, metres,
                                           published=(f"depth_anything_v2_metric_{dataset}_{enc}.pth",))
    # Depth Anything 3: the four monocular presets, all Apache-2.0 (Hub-mixin repos)
    for name, repo, enc, output, mb in (("da3-small", "DA3-SMALL", "vits", "relative depth", 330),
                                        ("da3-base", "DA3-BASE", "vitb", "relative depth", 540),
                                        ("da3mono-large", "DA3MONO-LARGE", "vitl", "relative depth", 1400),
                                        ("da3metric-large", "DA3METRIC-LARGE", "vitl", "metric (focal)", 1400)):
        models[name] = ModelEntry(name, f"depth-anything/{repo}", "depth_anything_3", enc, output, APACHE, mb,
                                  published_files=(repo,))
    # Video Depth Anything: the original .pth files; Small Apache-2.0, Base and Large CC-BY-NC-4.0
    for metric in (False, True):
        for size, enc in _SIZES.items():
            word = _ENCODER_WORD[enc]
            name = f"vda-metric-{size}" if metric else f"vda-{size}"
            repo = f"depth-anything/{'Metric-' if metric else ''}Video-Depth-Anything-{word}"
            file = f"{'metric_' if metric else ''}video_depth_anything_{enc}.pth"
            models[name] = ModelEntry(name, repo, "video_depth_anything", enc, "metric" if metric else "relative",
                                      APACHE if enc == "vits" else CC_BY_NC, _DOWNLOAD_MB[enc] + 20, files=(file,),
                                      published_files=(file,))
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
    """The one-line licence warning for a non-commercial model (a registry name, or a path whose
    identity ``identify`` knows), None for permissive or unknown ones."""
    entry = MODELS.get(name) or identify(name)
    if entry is None or entry.commercial_use:
        return None
    what = name if name == entry.name else f"{name} ({entry.name})"
    return (f"{what} is {entry.repo_id}, licensed {entry.licence}: non-commercial use only "
            f"({FREE_ALTERNATIVES})")


def print_licence_notice(name: str, file: TextIO | None = None) -> None:
    """Print ``licence_notice(name)`` to stderr, once per model per run (commands call it freely)."""
    text = licence_notice(name)
    if text is None or name in _noticed:
        return
    _noticed.add(name)
    print(f"depthcli: note: {text}", file=file or sys.stderr)


IDENTITY_KEY = "depthcli.identity"  # the registry name ``depthcli convert`` records in its output


def identify(source: str | Path) -> ModelEntry | None:
    """The published model a checkpoint path holds, as far as its names tell: a Hugging Face
    cache folder of a registry repo, a file or folder under the name the original project
    publishes it (``depth_anything_v2_vitb.pth``, ``DA3-BASE/``), or a depthcli ``.safetensors``
    whose metadata names it (``depthcli convert`` writes it). None when nothing says. Cheap: names
    and, for safetensors, the JSON header only."""
    path = Path(source).expanduser()
    if not path.exists():
        return None
    for part in path.absolute().parts:
        if part.startswith("models--"):
            repo = part.removeprefix("models--").replace("--", "/")
            for entry in MODELS.values():
                if entry.repo_id == repo:
                    return entry
    names = {path.name, path.parent.name if path.is_file() else path.name}
    for entry in MODELS.values():
        if names & set(entry.published_files):
            return entry
    if path.is_file() and path.suffix == ".safetensors":
        recorded = safetensors_metadata(path).get(IDENTITY_KEY)
        if recorded in MODELS:
            return MODELS[recorded]
    return None


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's JSON header ({} when unreadable)."""
    import json
    import struct

    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100_000_000:
                return {}
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error):
        return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


# ----------------------------------------------------------------------------------- cache
def cached_snapshot(name: str) -> Path | None:
    """The cached snapshot folder holding all of the entry's ``files`` for ``name``, without any network.

    Reads the standard Hugging Face cache (``$HF_HOME/hub``, ``$HF_HUB_CACHE``), so a model
    downloaded by transformers counts too. A half-finished download (config but no weights)
    is not a cached model.
    """
    from huggingface_hub import try_to_load_from_cache

    entry = get_entry(name)
    found = [try_to_load_from_cache(entry.repo_id, f, revision=REVISION) for f in entry.files]
    if not all(isinstance(p, str) for p in found):
        return None
    folders = {Path(p).parent for p in found}  # type: ignore[arg-type]
    return folders.pop() if len(folders) == 1 else None


def size_on_disk(folder: Path, files: tuple[str, ...] = FILES) -> int:
    """Bytes used by ``files`` in a snapshot folder (following the cache's blob symlinks)."""
    return sum((folder / f).stat().st_size for f in files if (folder / f).exists())


def cache_dir() -> Path:
    """Where the Hugging Face hub cache is, as huggingface_hub resolved it from the environment."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)
