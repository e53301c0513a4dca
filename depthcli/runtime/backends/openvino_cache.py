"""On-disk cache of converted OpenVINO models and their compiled blobs, so only the first run
pays the conversion and no run pays a compile it has paid before. No torch here.

Where: ``$XDG_CACHE_HOME/depthcli/openvino/<key>/`` (default ``~/.cache/depthcli``). Safe to
delete at any time.

Key: sha256 of what decides the converted graph: the checkpoint's content (its sha256, see
``runtime/fingerprint.py``; or the tensors' for a model built in memory), the model config (the
family's ``to_dict()``), depthcli's version and the source of the network code that is traced
(``code_fingerprint``, read from the files, not imported), and OpenVINO's version.

An entry holds everything a run needs without torch and without the checkpoint:
- ``<graph>.xml`` / ``<graph>.bin``: the float32 graphs, dynamic shapes (precision is chosen
  when they are compiled, so f32 and bf16 share one entry): ``model`` for the per-image
  families, ``encoder``, ``window``, ``stream``, ``stream_first`` for Video Depth Anything
  (``openvino_temporal_graph.py``);
- ``position.npy``: the learned position table, resized per grid in NumPy (``runtime/position``);
- ``meta.json`` (written last): the key material, every file's size and sha256, and the
  ``recipe``: the family config (its traits: preprocessing, output kind, ...) and graph I/O;
- ``compiled/*.blob``: compiled models exported by OpenVINO, one per (shape or dynamic,
  precision, threads), each with a ``.json`` of its size and CRC-32. Importing one takes
  ~0.2 s where compiling takes 0.5-3 s. At most ``MAX_STATIC_BLOBS`` fixed-shape blobs are kept
  per entry (least recently used go first): each is as large as the weights;
- ``compiled/first-shapes.json``: the input shapes the latest runs started with (a few names):
  a run that starts with one of them compiles that shape's own model at once (the shape
  policy in ``openvino_backend.py``).

Entries are written whole or not at all: saved into a temporary folder beside the entries,
``meta.json`` last, then renamed into place; two processes converting at once both succeed (the
first rename wins). A broken entry (missing meta, a file of the wrong size, an XML that does not
parse, a file whose checksum fails when it is read for a compile) is moved aside and rebuilt,
never trusted and never a crash; a broken blob is deleted and compiled again (one note). A cache
that cannot be written (read-only home) only costs the conversion and compiles on every run.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fingerprint import file_sha256

FORMAT = 2  # bump when the layout of an entry changes
MAIN_GRAPH = "model"  # the one graph of a per-image family
POSITION_FILE = "position.npy"
META = "meta.json"
COMPILED = "compiled"
MAX_STATIC_BLOBS = 8
FIRST_SHAPES = "first-shapes.json"
MAX_FIRST_SHAPES = 8
STALE_TEMP_S = 6 * 3600  # a conversion takes seconds to minutes; older temp folders are debris
_CRC_CHUNK = 1 << 24
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # .../depthcli


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/depthcli`` (absolute values only, as the XDG spec says), else
    ``~/.cache/depthcli``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "depthcli"


def code_fingerprint(family: str) -> str:
    """sha256 over the source files the converted graph is traced from: the shared DINOv2
    parts, the family's package, the configs and the graph wrappers (every family's: a few
    small files). A change to the network's code (between releases or in a working copy) never
    reuses a stale graph; changes elsewhere (checkpoint readers, the CLI) keep the cache. Read
    as files: nothing is imported."""
    model = PACKAGE_ROOT / "model"
    files = [model / "configs.py", *sorted(Path(__file__).parent.glob("openvino*_graph.py"))]
    for folder in ("dinov2", family):
        files += sorted((model / folder).glob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(PACKAGE_ROOT).as_posix().encode() + b"\0")
        digest.update((path.read_bytes() if path.exists() else b"") + b"\0")
    return digest.hexdigest()


def entry_key(weights_sha256: str, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(hex key, the material it hashes) for a checkpoint's content and the config of the model
    built from it (``config``: the family config's ``to_dict()``)."""
    import openvino as ov

    from ..._version import __version__

    material = {
        "format": FORMAT,
        "weights_sha256": weights_sha256,
        "config": config,
        "depthcli": __version__,
        "code_sha256": code_fingerprint(config["family"]),
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


def graph_files(graphs: list[str]) -> list[str]:
    """The files of the named graphs: ``<graph>.xml`` and its weights ``<graph>.bin``."""
    return [f"{g}{suffix}" for g in graphs for suffix in (".xml", ".bin")]


def write_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write a cache file whole or not at all (a temporary file beside it, then renamed), so a
    reader never sees half of it. Raises OSError; callers treat the cache as best effort."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CRC_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


@dataclass(frozen=True)
class Entry:
    """A valid cache entry: where its files are and what its meta says."""

    folder: Path
    meta: dict[str, Any]

    @property
    def key(self) -> str:
        return self.folder.name

    def xml(self, graph: str = MAIN_GRAPH) -> Path:
        return self.folder / f"{graph}.xml"

    @property
    def recipe(self) -> dict[str, Any]:
        return self.meta["recipe"]

    @property
    def graphs(self) -> list[str]:
        return list(self.meta.get("graphs", [MAIN_GRAPH]))

    def weights_bytes(self) -> int:
        return sum(int(self.meta["files"][f"{g}.bin"]["size"]) for g in self.graphs)

    def verify_graph(self, graph: str = MAIN_GRAPH) -> str | None:
        """None when the graph's files still hold the bytes recorded at conversion (read them
        all: only before a compile, which reads them anyway), else what is wrong."""
        for name in graph_files([graph]):
            want = self.meta["files"][name]
            try:
                if file_sha256(self.folder / name, memo=False) != want.get("sha256"):
                    return f"{name} does not match its checksum"
            except OSError as e:
                return f"{name}: {e.strerror or e}"
        return None

    def position_table(self) -> Any:
        import numpy as np

        return np.load(self.folder / POSITION_FILE, allow_pickle=False)

    # ---------------------------------------------------------------------- compiled blobs
    def blob_path(self, name: str) -> Path:
        return self.folder / COMPILED / f"{name}.blob"

    def read_blob(self, name: str) -> tuple[Any | None, str | None]:
        """(the blob's bytes as a read-only mapping, None) when it exists and its size and
        CRC-32 are those recorded when it was written; (None, why) for a broken one, which is
        deleted; (None, None) when there is none."""
        import numpy as np

        path = self.blob_path(name)
        try:
            info = json.loads(path.with_suffix(".json").read_text())
            size = path.stat().st_size
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError) as e:
            self.drop_blob(name)
            return None, f"unreadable blob record ({type(e).__name__})"
        if size != info.get("size") or _crc32(path) != info.get("crc32"):
            self.drop_blob(name)
            return None, "it does not match its checksum"
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: kept when older blobs are evicted
        return np.memmap(path, dtype=np.uint8, mode="c"), None

    def write_blob(self, name: str, data: memoryview) -> bool:
        """Store an exported compiled model atomically (blob, then its record); False when the
        cache cannot be written. Keeps at most MAX_STATIC_BLOBS fixed-shape blobs."""
        folder = self.folder / COMPILED
        try:
            folder.mkdir(exist_ok=True)
            write_atomic(self.blob_path(name), data)
            write_atomic(self.blob_path(name).with_suffix(".json"),
                         json.dumps({"size": len(data), "crc32": zlib.crc32(data)}).encode())
        except OSError:
            return False
        self._evict_blobs()
        return True

    def note_first_shape(self, name: str) -> bool:
        """Record that this run starts with the input shape compiled as ``name``; True when one
        of the latest runs started with it too. Best effort: an unreadable record counts as
        empty, one that cannot be written is left as it is (two runs at once may lose a name)."""
        path = self.folder / COMPILED / FIRST_SHAPES
        try:
            names = json.loads(path.read_text())
            names = [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
        except (OSError, ValueError):
            names = []
        seen = name in names
        if names[:1] != [name]:
            names = [name, *[n for n in names if n != name]][:MAX_FIRST_SHAPES]
            with contextlib.suppress(OSError):
                path.parent.mkdir(exist_ok=True)
                write_atomic(path, json.dumps(names).encode())
        return seen

    def drop_blob(self, name: str) -> None:
        for path in (self.blob_path(name), self.blob_path(name).with_suffix(".json")):
            with contextlib.suppress(OSError):
                path.unlink()

    def _evict_blobs(self) -> None:
        static = sorted(((p.stat().st_mtime, p) for p in (self.folder / COMPILED).glob("*static-*.blob")
                         if p.exists()), reverse=True)
        for _, path in static[MAX_STATIC_BLOBS:]:
            self.drop_blob(path.stem)


class ModelCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or cache_root()) / "openvino"

    def entry_folder(self, key: str) -> Path:
        return self.root / key

    # ------------------------------------------------------------------------------ read
    def find(self, key: str) -> tuple[Entry | None, str | None]:
        """(entry, None) for a valid entry; (None, why) when it is missing (why None) or was
        broken (why says what, and the entry has been moved aside). Cheap: reads meta.json and
        the file sizes, not the weights (``Entry.verify_graph`` does, before a compile)."""
        folder = self.entry_folder(key)
        if not folder.exists():
            return None, None
        meta, problem = self._check(folder)
        if problem is None:
            return Entry(folder, meta), None
        self.discard(key)
        return None, problem

    def _check(self, folder: Path) -> tuple[dict[str, Any], str | None]:
        try:
            meta = json.loads((folder / META).read_text())
            files = meta["files"]
            meta["recipe"]["config"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return {}, f"no valid {META} ({type(e).__name__})"
        graphs = meta.get("graphs", [MAIN_GRAPH])
        if not isinstance(graphs, list) or not all(isinstance(g, str) for g in graphs):
            return meta, f"{META} lists no graphs"
        for name in (*graph_files(graphs), POSITION_FILE):
            want = files.get(name) if isinstance(files, dict) else None
            if not isinstance(want, dict):
                return meta, f"{META} does not list {name}"
            try:
                size = (folder / name).stat().st_size
            except OSError:
                return meta, f"{name} is missing"
            if size != want.get("size"):
                return meta, f"{name} has {size} bytes, {want.get('size')} expected"
        if file_sha256(folder / POSITION_FILE, memo=False) != files[POSITION_FILE].get("sha256"):
            return meta, f"{POSITION_FILE} does not match its checksum"
        return meta, None

    def discard(self, key: str) -> None:
        """Move a bad entry out of the way (atomic), then delete it; a concurrent process that
        already did either is fine."""
        entry = self.entry_folder(key)
        trash = self.root / f".trash-{key}-{os.getpid()}-{time.monotonic_ns()}"
        try:
            entry.rename(trash)
        except OSError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    # ----------------------------------------------------------------------------- write
    def store(self, key: str, graphs: Any, material: dict[str, Any], recipe: dict[str, Any],
              position_1nc: Any) -> Entry:
        """Write the graphs (one ``openvino.Model``, or {name: model}), the position table and
        the recipe as entry ``key``, atomically. Raises OSError when the cache cannot be written."""
        import numpy as np
        import openvino as ov

        self.root.mkdir(parents=True, exist_ok=True)
        self._sweep()
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=self.root))
        try:
            named = graphs if isinstance(graphs, dict) else {MAIN_GRAPH: graphs}
            for name, graph in named.items():
                # compress_to_fp16=False: the default would round every weight to float16
                ov.save_model(graph, str(tmp / f"{name}.xml"), compress_to_fp16=False)
            np.save(tmp / POSITION_FILE, np.ascontiguousarray(position_1nc, dtype=np.float32), allow_pickle=False)
            names = [*graph_files(list(named)), POSITION_FILE]
            files = {name: {"size": (tmp / name).stat().st_size, "sha256": file_sha256(tmp / name, memo=False)}
                     for name in names}
            meta = {**material, "key": key, "graphs": list(named), "files": files, "recipe": recipe,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            for name in names:  # the data is on disk before the entry becomes visible
                with open(tmp / name, "rb") as f:
                    os.fsync(f.fileno())
            with open(tmp / META, "w", encoding="utf-8") as f:
                json.dump(meta, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; an entry is as readable as the cache
            try:
                os.rename(tmp, self.entry_folder(key))
            except OSError:
                if not self.entry_folder(key).exists():
                    raise
                # another process stored the same entry first: theirs is as good as ours
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp, ignore_errors=True)
        entry, problem = self.find(key)
        if entry is None:
            raise OSError(f"the stored entry cannot be read back ({problem})")
        return entry

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
