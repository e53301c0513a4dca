"""On-disk cache of converted OpenVINO models, so only the first run pays the conversion.

Where: ``$XDG_CACHE_HOME/depthcli/openvino/<key>/`` (default ``~/.cache/depthcli``). Safe to
delete at any time.

Key: sha256 of what decides the converted graph: the checkpoint's content (its sha256, see
``runtime/fingerprint.py``; or the tensors' for a model built in memory), the model config
(size, version, feature taps, metric range), depthcli's version and the source of the code that
is traced, and OpenVINO's version. The graph is stored once in float32; the precision (f32 or
bf16) is chosen when it is compiled, so both share one entry.

Entries are written whole or not at all: the model is saved into a temporary folder beside the
entries, with a ``meta.json`` (written last) that records every file's size and sha256, and the
folder is renamed into place. Two processes converting at once both succeed: the first rename
wins, the second finds the entry there and drops its own copy. An entry that fails its check
(missing meta, a truncated or altered file, unreadable XML) is moved aside and rebuilt, never
trusted and never a crash. A cache that cannot be written (read-only home) only costs the
conversion on every run.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ..fingerprint import file_sha256

FORMAT = 1  # bump when the layout of an entry changes
FILES = ("model.xml", "model.bin")
META = "meta.json"
STALE_TEMP_S = 6 * 3600  # a conversion takes seconds to minutes; older temp folders are debris


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/depthcli`` (absolute values only, as the XDG spec says), else
    ``~/.cache/depthcli``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "depthcli"


def code_fingerprint(model: Any) -> str:
    """sha256 over the source of the modules the converted graph is traced from: every depthcli
    module class inside ``model``, the model configs and the wrapper. A change to the network's
    code (between releases or in a working copy) never reuses a stale graph; changes elsewhere
    (checkpoint readers, the CLI) keep the cache."""
    import sys

    from ...model import configs
    from . import openvino_graph

    names = {type(m).__module__ for m in model.modules()} | {configs.__name__, openvino_graph.__name__}
    digest = hashlib.sha256()
    for name in sorted(n for n in names if n.startswith("depthcli.")):
        source = getattr(sys.modules.get(name), "__file__", None)
        digest.update(name.encode() + b"\0" + (Path(source).read_bytes() if source else b"") + b"\0")
    return digest.hexdigest()


def entry_key(weights_sha256: str, model: Any) -> tuple[str, dict[str, Any]]:
    """(hex key, the material it hashes) for a checkpoint's content and the model built from
    it (its config and code)."""
    import openvino as ov

    from ..._version import __version__

    config = model.config
    enc = config.encoder
    material = {
        "format": FORMAT,
        "weights_sha256": weights_sha256,
        "config": {"embed_dim": enc.embed_dim, "depth": enc.depth, "num_heads": enc.num_heads,
                   "features": enc.features, "out_channels": list(enc.out_channels),
                   "version": config.version, "taps": list(config.taps), "max_depth": config.max_depth},
        "depthcli": __version__,
        "code_sha256": code_fingerprint(model),
        "openvino": ov.__version__,
        "stored_precision": "f32",
    }
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:40]
    return key, material


def read_graph(xml: Path) -> Any:
    """The ``openvino.Model`` stored at ``xml`` (beside its ``.bin``), its weights read into
    memory rather than mapped: a compiled model keeps a mapped file's pages resident as a whole,
    while weights in memory that the plugin copied are freed with the graph."""
    import openvino as ov

    core = ov.Core()
    core.set_property({"ENABLE_MMAP": False})
    return core.read_model(str(xml))


class ModelCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or cache_root()) / "openvino"

    def entry(self, key: str) -> Path:
        return self.root / key

    def graph_xml(self, key: str) -> Path:
        return self.entry(key) / "model.xml"

    # ------------------------------------------------------------------------------ read
    def load(self, key: str) -> tuple[Any | None, str | None]:
        """(openvino.Model, None) for a valid entry; (None, why) when it is missing (why None)
        or was broken (why says what, and the entry has been moved aside)."""
        entry = self.entry(key)
        if not entry.exists():
            return None, None
        problem = self._check(entry)
        if problem is None:
            try:
                return read_graph(self.graph_xml(key)), None
            except Exception as e:  # noqa: BLE001 - any parse failure means a bad entry
                problem = f"unreadable model ({type(e).__name__})"
        self.discard(key)
        return None, problem

    def _check(self, entry: Path) -> str | None:
        try:
            meta = json.loads((entry / META).read_text())
            files = meta["files"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return f"no valid {META} ({type(e).__name__})"
        for name in FILES:
            path = entry / name
            want = files.get(name) if isinstance(files, dict) else None
            if not isinstance(want, dict):
                return f"{META} does not list {name}"
            try:
                size = path.stat().st_size
            except OSError:
                return f"{name} is missing"
            if size != want.get("size"):
                return f"{name} has {size} bytes, {want.get('size')} expected"
            if file_sha256(path, memo=False) != want.get("sha256"):
                return f"{name} does not match its checksum"
        return None

    def discard(self, key: str) -> None:
        """Move a bad entry out of the way (atomic), then delete it; a concurrent process that
        already did either is fine."""
        entry = self.entry(key)
        trash = self.root / f".trash-{key}-{os.getpid()}-{time.monotonic_ns()}"
        try:
            entry.rename(trash)
        except OSError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    # ----------------------------------------------------------------------------- write
    def store(self, key: str, ov_model: Any, material: dict[str, Any]) -> Path:
        """Write ``ov_model`` as entry ``key`` atomically; returns the entry folder. Raises
        OSError when the cache cannot be written."""
        import openvino as ov

        self.root.mkdir(parents=True, exist_ok=True)
        self._sweep()
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=self.root))
        try:
            # compress_to_fp16=False: the default would round every weight to float16
            ov.save_model(ov_model, str(tmp / "model.xml"), compress_to_fp16=False)
            files = {name: {"size": (tmp / name).stat().st_size, "sha256": file_sha256(tmp / name, memo=False)}
                     for name in FILES}
            meta = {**material, "key": key, "files": files,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            with open(tmp / META, "w", encoding="utf-8") as f:
                json.dump(meta, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            for name in FILES:  # the data is on disk before the entry becomes visible
                with open(tmp / name, "rb") as f:
                    os.fsync(f.fileno())
            try:
                os.rename(tmp, self.entry(key))
            except OSError:
                if not self.entry(key).exists():
                    raise
                # another process stored the same entry first: theirs is as good as ours
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp, ignore_errors=True)
        return self.entry(key)

    def _sweep(self) -> None:
        """Delete temporary folders that a killed process left behind (old enough that no
        running conversion can still be writing them)."""
        now = time.time()
        for path in self.root.glob(".t*-*"):
            if not path.name.startswith((".tmp-", ".trash-")):
                continue
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > STALE_TEMP_S:
                    shutil.rmtree(path, ignore_errors=True)
