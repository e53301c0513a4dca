"""Where a cluster run reads its inputs and writes its outputs: local (or shared) paths as a local
run does, or object-store URIs (``s3://``, ``gs://``) through ``pyarrow.fs`` (credentials and region as the AWS / Google
tools read them; ``AWS_ENDPOINT_URL[_S3]`` for an S3-compatible server such as MinIO).

Atomicity without a rename: a local output goes through ``io.writers`` (hidden temporary file,
then ``os.replace``). An object is written with ONE upload that becomes visible only when it
is complete (S3 PutObject, or CompleteMultipartUpload for a large one; a GCS upload is
finalised the same way), so an object-store output is never seen half-written and writing the
same key again (a retried task) replaces it whole. A temporary key plus a server-side copy would
only add a second, non-atomic step. What a killed upload can leave is an incomplete multipart
upload, which is invisible (a bucket lifecycle rule reclaims it).

A ``Location`` is a ``Path`` (local) or a ``str`` URI. The local planner (``jobs.image``) names
outputs with ``pathlib``, which folds ``s3://b/k`` to ``s3:/b/k``; ``plan_outputs`` turns such
names back into URIs, so output names and folder mirroring stay the local ones.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Union

from ..io.inputs import OBJECT_SCHEMES, InputItem, is_image_name, is_object_uri  # noqa: F401 - re-exported
from ..io.writers import OutputError

Location = Union[Path, str]  # noqa: UP007 - a runtime alias, Python 3.10

_GLOB_CHARS = frozenset("*?[")


class StorageError(Exception):
    """An object-store read failed; the message is the one-line reason."""


_FILESYSTEMS: dict[str, object] = {}


def _resolve(uri: str):  # noqa: ANN202 - (pyarrow.fs.FileSystem, path inside it)
    """The filesystem and in-filesystem path of a URI; one filesystem per scheme and bucket per
    process (building an S3 one resolves the bucket's region: a request each time)."""
    from pyarrow import fs

    scheme, _, rest = uri.partition("://")
    bucket = rest.split("/", 1)[0]
    key = f"{scheme.lower()}://{bucket}"
    if key not in _FILESYSTEMS:
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if scheme.lower() == "s3" and endpoint:  # MinIO, Ceph, a local test server: the AWS variables
            where = endpoint.partition("://")
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
            _FILESYSTEMS[key] = fs.S3FileSystem(endpoint_override=where[2] or where[0],
                                                scheme=where[0] if where[2] else "https", region=region)
        else:
            _FILESYSTEMS[key], _ = fs.FileSystem.from_uri(key)
    return _FILESYSTEMS[key], rest.rstrip("/")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ----------------------------------------------------------------------------------- bytes
def read_bytes(location: Location) -> bytes:
    """The whole file or object; ``StorageError`` for a missing or unreadable one."""
    if not is_object_uri(location):
        return Path(location).read_bytes()
    filesystem, path = _resolve(str(location))
    try:
        with filesystem.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        raise StorageError("no such file") from None
    except OSError as e:
        raise StorageError(f"cannot read: {_reason(e)}") from None


def write_bytes(location: Location, data: bytes) -> None:
    """Atomically: temp file + rename locally, one upload for an object (see the module note).
    Raises ``OutputError`` with a one-line reason."""
    if not is_object_uri(location):
        from ..io import writers

        writers.write_bytes(location, data)
        return
    filesystem, path = _resolve(str(location))
    try:
        with filesystem.open_output_stream(path) as f:
            f.write(data)
    except OSError as e:
        raise OutputError(f"cannot write {location}: {_reason(e)}") from None


def download(uri: str, dest: Path) -> None:
    """An object to a local file (a video task reads it with OpenCV)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(read_bytes(uri))


def upload_tree(local_root: Path, uri_root: str) -> list[str]:
    """Every file under ``local_root`` to the same relative keys under ``uri_root``."""
    written = []
    for path in sorted(p for p in local_root.rglob("*") if p.is_file()):
        target = f"{uri_root.rstrip('/')}/{path.relative_to(local_root).as_posix()}"
        write_bytes(target, path.read_bytes())
        written.append(target)
    return written


def parent_uri(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[0]


# ----------------------------------------------------------------------------------- inputs
def collect_inputs(inputs: Sequence[str], *, recursive: bool, list_file: str | None,
                   stdin: BinaryIO) -> tuple[list[InputItem], list[str], int]:
    """``io.inputs.collect_inputs`` for the local inputs (the same rules, depthcli's own outputs
    left out and counted), plus object-store files and folders (``-r`` descends) given on the
    command line or in the ``--list``. An object-store prefix is taken whole: telling depthcli's
    outputs there from photos would cost a request per object (write them under another prefix)."""
    from ..io import inputs as local

    problems: list[str] = []
    listed: list[str] = []
    if list_file is not None:
        if is_object_uri(list_file):
            try:
                listed = _parse_list(read_bytes(list_file))
            except StorageError as e:
                problems.append(f"{list_file}: {e} (list file)")
        else:
            listed = local._read_list(list_file, stdin, problems, stdin_used="-" in inputs)
    local_specs = [s for s in [*inputs, *listed] if not is_object_uri(s)]
    items, local_problems, left_out = local.collect_inputs(local_specs, recursive=recursive, list_file=None,
                                                           stdin=stdin)
    problems += local_problems
    seen: set[str] = set()
    for spec in [s for s in [*inputs, *listed] if is_object_uri(s)]:
        _collect_uri(spec, recursive, items, problems, seen)
    return items, problems, left_out


def _parse_list(raw: bytes) -> list[str]:
    entries = raw.split(b"\0") if b"\0" in raw else raw.splitlines()
    specs = (os.fsdecode(e).strip() for e in entries)
    return [s for s in specs if s and not s.startswith("#")]


def _collect_uri(spec: str, recursive: bool, items: list[InputItem], problems: list[str], seen: set[str]) -> None:
    """One object, or the images under a prefix (sorted; hidden names skipped as locally)."""
    from pyarrow import fs

    if _GLOB_CHARS.intersection(spec):
        problems.append(f"{spec}: wildcards are not expanded in object-store URIs; give the folder (and -r)")
        return
    scheme = spec.split("://", 1)[0].lower()
    try:
        filesystem, path = _resolve(spec)
        info = filesystem.get_file_info(path)
        if info.type == fs.FileType.File:
            found = [(path, PurePosixPath(path).name)]
        elif info.type == fs.FileType.Directory:
            infos = filesystem.get_file_info(fs.FileSelector(path, recursive=recursive))
            found = sorted((i.path, PurePosixPath(i.path).relative_to(path).as_posix()) for i in infos
                           if i.type == fs.FileType.File and is_image_name(i.base_name)
                           and not any(part.startswith(".") for part in PurePosixPath(i.path).relative_to(path).parts))
            if not found:
                hint = "" if recursive else " (-r searches subfolders)"
                problems.append(f"{spec}: is a folder with no images{hint}")
                return
        else:
            problems.append(f"{spec}: no such file")
            return
    except OSError as e:
        problems.append(f"{spec}: cannot list: {_reason(e)}")
        return
    for key, relative in found:
        uri = f"{scheme}://{key}"
        if uri in seen:
            continue
        seen.add(uri)
        items.append(InputItem(source=Path(uri), label=uri if key != path else spec, relative=Path(relative)))


def source_of(item: InputItem) -> str | None:
    """What a worker reads: the URI of an object, the absolute path of a local file (workers do
    not share the driver's working directory), None for stdin (the bytes travel in the row)."""
    if item.source is None:
        return None
    uri = as_uri(item.source)
    return uri if uri is not None else os.path.abspath(item.source)


def as_uri(path: Path | str) -> str | None:
    """``s3:/b/k`` (a URI that went through pathlib) back to ``s3://b/k``; None if not one."""
    text = Path(path).as_posix() if not isinstance(path, str) else path
    if is_object_uri(text):
        return text
    scheme, sep, rest = text.partition(":/")
    return f"{scheme}://{rest}" if sep and scheme.lower() in OBJECT_SCHEMES else None


# ----------------------------------------------------------------------------------- outputs
def plan_outputs(items: list[InputItem], output: str | None, fmt: str, *,
                 skip_existing: bool) -> tuple[list[tuple[InputItem, Location | None]], int]:
    """``jobs.image.plan_outputs`` (the same names, mirroring and clash rule) with object-store
    destinations as URIs; ``--skip-existing`` checks an object-store folder with one listing."""
    from ..jobs.image import plan_outputs as plan_local

    planned, _ = plan_local(items, output, fmt, skip_existing=False)
    jobs: list[tuple[InputItem, Location | None]] = []
    listings: dict[str, set[str]] = {}
    skipped = 0
    for item, dest in planned:
        uri = as_uri(dest) if dest is not None and (is_object_uri(output) or
                                                    (output is None and is_object_uri(item.label))) else None
        where: Location | None = uri if uri is not None else dest
        if skip_existing and where is not None and _exists(where, listings):
            skipped += 1
            continue
        jobs.append((item, where))
    return jobs, skipped


def _exists(where: Location, listings: dict[str, set[str]]) -> bool:
    if not is_object_uri(where):
        return Path(where).exists()
    from pyarrow import fs

    folder = parent_uri(str(where))
    if folder not in listings:
        filesystem, path = _resolve(folder)
        try:
            infos = filesystem.get_file_info(fs.FileSelector(path, allow_not_found=True))
        except OSError:
            infos = []
        listings[folder] = {i.path for i in infos if i.type == fs.FileType.File}
    return _resolve(str(where))[1] in listings[folder]


def sweep_temp_files(destinations: Iterable[Location | None]) -> int:
    """Remove the hidden temporary files (``io.writers.temp_path_for``) that a worker killed
    between writing and renaming left beside this run's local outputs; only names derived from
    this run's own destinations are touched. Returns how many were removed."""
    pattern_by_dir: dict[Path, list[re.Pattern[str]]] = {}
    for dest in destinations:
        if dest is None or is_object_uri(dest):
            continue
        final = Path(dest)
        pattern = re.compile(rf"^\.{re.escape(final.stem)}\.[0-9a-f]{{8}}\.tmp{re.escape(final.suffix)}$")
        pattern_by_dir.setdefault(final.parent, []).append(pattern)
    removed = 0
    for folder, patterns in pattern_by_dir.items():
        try:
            names = [n for n in os.listdir(folder) if n.startswith(".")]
        except OSError:
            continue
        for name in names:
            if any(p.match(name) for p in patterns):
                try:
                    os.unlink(folder / name)
                    removed += 1
                except OSError:
                    pass
    return removed
