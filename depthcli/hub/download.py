"""Fetch registry models into the standard Hugging Face cache, shared with transformers.

huggingface_hub does the work (and reads ``HF_ENDPOINT``, ``HF_HOME``, ``HF_HUB_CACHE``,
``HF_HUB_OFFLINE``, ``HF_TOKEN`` itself). What this module adds:

- the cache is tried first, so a cached model costs no network request at all (not even the
  HEAD that ``hf_hub_download`` would send to look for a newer revision);
- only the entry's files are fetched: ``config.json`` and ``model.safetensors``, never pickled
  weights, except Video Depth Anything's, published only as its original ``.pth`` (read
  without unpickling objects: ``model/archive.py``);
- every failure becomes one :class:`DownloadError` line that says what to do next.

huggingface_hub writes each file to a unique ``*.incomplete`` file and renames it into the
cache only when complete, deleting it on failure, so an interrupted download leaves no
corrupt entry and the next run simply downloads again.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ..model.errors import CheckpointError
from .registry import REVISION, ModelEntry, cached_snapshot, get_entry, licence_notice

__all__ = ["DownloadError", "fetch_model", "licence_notice"]


class DownloadError(CheckpointError):
    """A registry model that could not be fetched (the CLI maps it to exit code 3)."""


def fetch_model(name: str, *, progress: bool = True) -> Path:
    """The local snapshot folder (the entry's ``files``) of registry model ``name``; for a model
    published as one file (Video Depth Anything's ``.pth``), that file.

    Downloads what is missing, with a progress bar on stderr when ``progress`` and stderr is
    a terminal (``TQDM_POSITION=-1`` forces it, ``HF_HUB_DISABLE_PROGRESS_BARS=1`` hides it).
    """
    try:
        entry = get_entry(name)
    except KeyError as e:
        raise DownloadError(e.args[0]) from None
    cached = cached_snapshot(name)
    if cached is not None:
        return _checkpoint_path(entry, cached)
    first, *rest = entry.files
    snapshot = _fetch_file(entry, first, REVISION, progress).parent  # .../snapshots/<commit>
    for filename in rest:  # pinned to the config's commit, even if the branch moves meanwhile
        _fetch_file(entry, filename, snapshot.name, progress)
    return _checkpoint_path(entry, snapshot)


def _checkpoint_path(entry: ModelEntry, snapshot: Path) -> Path:
    """What depthcli reads: the snapshot folder, or its one weights file (a ``.pth``, whose name
    says the family and metric-ness)."""
    return snapshot / entry.files[0] if len(entry.files) == 1 else snapshot


def _fetch_file(entry: ModelEntry, filename: str, revision: str, progress: bool) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        with _quiet_hub_logging():
            path = hf_hub_download(entry.repo_id, filename, revision=revision,
                                   tqdm_class=_progress_class(entry, filename, progress))
    except Exception as e:  # noqa: BLE001 - every failure becomes one actionable line (Ctrl-C passes)
        raise DownloadError(_explain(e, entry, filename)) from e
    return Path(path)


def _progress_class(entry: ModelEntry, filename: str, enabled: bool) -> type:
    """huggingface_hub's own bar (TTY detection, global disable), labelled with the model name."""
    from huggingface_hub.utils import tqdm as hub_tqdm

    class Bar(hub_tqdm):
        def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - tqdm's signature
            kwargs["desc"] = f"{entry.name} {filename}"
            if not enabled:
                kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Bar


@contextlib.contextmanager
def _quiet_hub_logging() -> Iterator[None]:
    """Hide huggingface_hub's multi-line resume warnings: the failure is reported as one line."""
    import logging

    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _explain(error: Exception, entry: ModelEntry, filename: str) -> str:
    """One line for a failed download, most specific cause first."""
    from huggingface_hub import constants
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = constants.ENDPOINT
    if isinstance(error, LocalEntryNotFoundError):
        why = ("offline mode is on (HF_HUB_OFFLINE)" if constants.HF_HUB_OFFLINE
               else f"{where} cannot be reached")
        return (f"model {entry.name} is not in the local cache ({constants.HF_HUB_CACHE}) and {why}: "
                f"run `depthcli download {entry.name}` on a connected machine (same HF_HOME) "
                f"or pass --model PATH to a local checkpoint")
    if isinstance(error, GatedRepoError):
        return (f"model {entry.name}: {entry.repo_id} on {where} is gated: accept its terms on the hub "
                f"and log in (`hf auth login`)")
    if isinstance(error, RepositoryNotFoundError):
        return (f"model {entry.name}: repository {entry.repo_id} not found on {where} "
                f"(check HF_ENDPOINT, or your token if it is private)")
    if isinstance(error, RevisionNotFoundError):
        return f"model {entry.name}: {entry.repo_id} has no revision {REVISION!r} on {where}"
    if isinstance(error, EntryNotFoundError):
        return f"model {entry.name}: {entry.repo_id} has no {filename} on {where}"
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        return (f"model {entry.name}: downloading {entry.repo_id}/{filename} from {where} failed "
                f"(HTTP {error.response.status_code}); run the command again later")
    detail = _first_line(error)
    return (f"model {entry.name}: downloading {entry.repo_id}/{filename} from {where} was interrupted "
            f"({detail}); nothing partial was kept, run the command again to retry")


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__
