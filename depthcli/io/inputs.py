"""Expanding ``depthcli image INPUT... [-r] [--list FILE|-]`` into a deterministic work list.

Missing paths are reported, not fatal: one typo in a batch of thousands should cost one line
on stderr, not the whole run. The caller prints the problems and carries on with the items.
"""
from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .formats.metadata import is_depthcli_output
from .images import IMAGE_EXTENSIONS

STDIN_LABEL = "<stdin>"
_GLOB_CHARS = frozenset("*?[")
OBJECT_SCHEMES = ("s3", "gs", "gcs")  # files in an object store (read by cluster.storage)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass
class InputItem:
    """One image to process.

    ``relative`` is the path below the directory (or glob base) it was found under, or just the
    file name, so ``-o DIR`` can mirror subfolders; ``data`` holds stdin's bytes.
    """

    source: Path | None  # None: the image is in ``data`` (stdin)
    label: str  # for messages: the path as the user wrote it, or "<stdin>"
    relative: Path
    data: bytes | None = field(default=None, repr=False)


def is_object_uri(text: object) -> bool:
    """``s3://...``, ``gs://...``: a file in an object store (not ``rtsp://`` or a local path)."""
    m = _SCHEME.match(text) if isinstance(text, str) else None
    return bool(m) and m.group(1).lower() in OBJECT_SCHEMES


def is_image_name(name: str) -> bool:
    """By extension, case-insensitively; used only when scanning directories (files named
    explicitly are always tried, whatever their extension)."""
    return name.rpartition(".")[2].lower() in IMAGE_EXTENSIONS if "." in name else False


def collect_inputs(
    inputs: Sequence[str], *, recursive: bool, list_file: str | None, stdin: BinaryIO
) -> tuple[list[InputItem], list[str], int]:
    """Expand files, directories, quoted globs, ``-`` (one image on stdin) and a list file
    (``-`` = stdin; one path per line, blanks and ``#`` comments skipped) into (items,
    problems, left out). Items keep command-line order, directories are sorted, duplicates
    dropped. depthcli's own outputs found in a folder or by a glob are left out and counted
    (a second run beside the inputs must not take the first run's outputs as photos); a file
    named explicitly, or in the list, is always taken."""
    collector = _Collector(recursive)
    specs = list(inputs)
    if list_file is not None:
        specs_from_list = _read_list(list_file, stdin, collector.problems, stdin_used="-" in specs)
    else:
        specs_from_list = []
    for spec in specs:
        if spec == "-":
            collector.add_stdin(stdin, used_by_list=list_file == "-")
        else:
            collector.add(spec)
    for spec in specs_from_list:
        collector.add(spec)
    return collector.items, collector.problems, collector.left_out


def _read_list(list_file: str, stdin: BinaryIO, problems: list[str], *, stdin_used: bool) -> list[str]:
    """Paths from a list file; NUL-separated input (``find -print0``) is accepted too."""
    if list_file == "-":
        if stdin_used:
            return []  # reported by add_stdin: stdin cannot be both
        raw = stdin.read()
    else:
        try:
            raw = Path(list_file).read_bytes()
        except FileNotFoundError:
            problems.append(f"{list_file}: no such file (list file)")
            return []
        except OSError as exc:
            problems.append(f"{list_file}: cannot read list file: {exc.strerror or exc}")
            return []
    entries = raw.split(b"\0") if b"\0" in raw else raw.splitlines()
    specs = []
    for entry in entries:
        text = os.fsdecode(entry.strip(b"\r\n") if b"\0" in raw else entry.strip())
        if text and not text.startswith("#"):
            specs.append(text)
    return specs


class _Collector:
    def __init__(self, recursive: bool) -> None:
        self.recursive = recursive
        self.items: list[InputItem] = []
        self.problems: list[str] = []
        self._seen: set[str] = set()
        self._stdin_taken = False
        self.left_out = 0  # depthcli outputs found by expanding a folder or a glob

    def add_stdin(self, stdin: BinaryIO, *, used_by_list: bool) -> None:
        if used_by_list:
            self.problems.append("-: stdin cannot be both the list file and an image")
            return
        if self._stdin_taken:
            return  # "-" twice: there is only one stdin
        self._stdin_taken = True
        data = stdin.read()
        if not data:
            self.problems.append(f"{STDIN_LABEL}: no data on standard input")
            return
        self.items.append(InputItem(source=None, label=STDIN_LABEL, relative=Path("stdin"), data=data))

    def add(self, spec: str) -> None:
        if not os.path.lexists(spec) and _GLOB_CHARS.intersection(spec):
            self._add_glob(spec)
            return
        path = Path(spec)
        if os.path.isdir(spec):
            if not self._add_dir(path, Path()):  # said explicitly: finding nothing is worth a line
                hint = "" if self.recursive else " (-r searches subfolders)"
                self.problems.append(f"{spec}: is a folder with no images{hint}")
        elif os.path.exists(spec):
            self._add_file(path, spec, Path(path.name))
        elif os.path.lexists(spec):
            self.problems.append(f"{spec}: broken symbolic link")
        else:
            self.problems.append(f"{spec}: no such file")

    def _add_glob(self, pattern: str) -> None:
        matches = sorted(glob.glob(pattern, recursive=True))
        if not matches:
            self.problems.append(f"{pattern}: no files match")
            return
        base = _glob_base(pattern)
        # "photos/*" means the images there; "scans/*.dat" means those files, whatever they are.
        last = Path(pattern).name
        literal_ext = "." in last and not _GLOB_CHARS.intersection(last.rpartition(".")[2])
        for match in matches:
            path = Path(match)
            if path.is_dir():
                self._add_dir(path, _relative_to(path, base, keep_dir=True))
            elif path.exists() and (literal_ext or is_image_name(path.name)):  # glob lists broken links
                self._add_found(path, match, _relative_to(path, base))

    def _add_dir(self, root: Path, prefix: Path) -> int:
        found = sorted(_walk_images(root, self.recursive, self.problems), key=lambda rel: rel.as_posix())
        for rel in found:
            path = root / rel
            self._add_found(path, str(path), prefix / rel)
        return len(found)

    def _add_found(self, path: Path, label: str, relative: Path) -> None:
        """A file found by expanding a folder or a glob: taken unless depthcli wrote it."""
        if is_depthcli_output(path):
            self.left_out += 1
            return
        self._add_file(path, label, relative)

    def _add_file(self, path: Path, label: str, relative: Path) -> None:
        key = os.path.realpath(path)
        if key in self._seen:
            return
        self._seen.add(key)
        self.items.append(InputItem(source=path, label=label, relative=relative))


def _walk_images(root: Path, recursive: bool, problems: list[str]) -> Iterator[Path]:
    """Image files under ``root`` as paths relative to it. Hidden names are skipped; symlinked
    directories are followed, each real directory once (so link loops end)."""
    visited: set[str] = set()

    def on_error(exc: OSError) -> None:
        problems.append(f"{exc.filename}: cannot list directory: {exc.strerror or exc}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:
            dirnames[:] = []
            continue
        visited.add(real)
        if recursive:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        else:
            dirnames[:] = []
        rel_dir = Path(os.path.relpath(dirpath, root))
        for name in filenames:
            if name.startswith(".") or not is_image_name(name):
                continue
            full = os.path.join(dirpath, name)
            if os.path.isfile(full):  # skips broken links and sockets/FIFOs named like images
                yield rel_dir / name if rel_dir != Path(".") else Path(name)


def _glob_base(pattern: str) -> Path:
    """The directory part of a pattern before its first wildcard: matches are made relative to
    it, so ``photos/**/*.jpg`` mirrors the tree below ``photos``."""
    parts = Path(pattern).parts
    base: list[str] = []
    for part in parts[:-1]:
        if _GLOB_CHARS.intersection(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def _relative_to(path: Path, base: Path, *, keep_dir: bool = False) -> Path:
    """``path`` below ``base``; the bare name (or nothing, for a directory) when it is not."""
    fallback = Path() if keep_dir else Path(path.name)
    try:
        rel = path.relative_to(base)
    except ValueError:
        return fallback
    return rel if ".." not in rel.parts else fallback
