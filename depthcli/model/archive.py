"""Check a ``torch.save`` zip archive before ``torch.load`` reads it; decide if it may be mapped.

``torch.load(mmap=True)`` maps the file and hands out, as each tensor, the bytes found at its
entry's data offset, whatever the entry holds: a checkpoint re-packed by an ordinary zip tool
(entries DEFLATE-compressed) gives compressed bytes as weights, and an entry shorter than the
pickle says gives the following entries' bytes. Without ``mmap`` torch decompresses and checks
each entry's size, but not the CRC of a compressed entry, so damaged compressed data loads as
garbage of the right length. Hence, before anything is loaded:

- the archive itself: central directory present (else the file was cut short), no duplicate
  names, every entry's local header where the directory says, every entry's data inside the
  file, only the methods PyTorch reads (stored, DEFLATE), nothing encrypted, stored entries
  whose two sizes agree;
- every storage data.pkl refers to (found without unpickling, ``pickle_refs.py``) exists and
  holds exactly the bytes data.pkl declares;
- every compressed entry is decompressed once here, so its CRC is checked.

The file is mapped only when every storage is stored uncompressed, 64-byte aligned (as
``torch.save`` writes it), and torch's own reader sees the same offsets and sizes; anything
else is loaded by copying, which gives the same tensors.
"""
from __future__ import annotations

import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from .pickle_refs import GlobalName, PickleScanError, StorageRef, storage_refs

ZIP_LOCAL_MAGIC = b"PK\x03\x04"  # torch.load's own test for the zip format (the first 4 bytes)
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # 30 bytes: magic ... name length, extra length
READABLE_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "DEFLATE"}  # what miniz reads
_METHOD_NAMES = {1: "Shrink", 6: "Implode", 9: "Deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard",
                 95: "xz", 98: "PPMd"}
# general-purpose flag bits that PyTorch's zip reader (miniz) refuses
_ENCRYPTED = 1 << 0 | 1 << 6 | 1 << 13  # encrypted, strong encryption, masked local headers
_PATCHED_DATA = 1 << 5
MMAP_ALIGNMENT = 64  # torch.save aligns every storage's data to 64 bytes
_VERIFY_CHUNK = 1 << 20
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError)


class ArchiveError(ValueError):
    """What is wrong with the archive, as one short line (without the file name)."""


@dataclass(frozen=True)
class ArchivePlan:
    mappable: bool  # torch.load(mmap=True) hands out exactly the storages' bytes
    why_copied: str  # why not, "" when mappable
    storages: int  # storage references in data.pkl


def is_torch_zip(path: Path) -> bool:
    """True when torch.load would read ``path`` as a zip archive (not the legacy format)."""
    with open(path, "rb") as f:
        return f.read(len(ZIP_LOCAL_MAGIC)) == ZIP_LOCAL_MAGIC


def inspect_archive(path: Path) -> ArchivePlan:
    """Validate the archive at ``path`` (see the module docstring); raise :class:`ArchiveError`."""
    file_size = path.stat().st_size
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        if str(e) == "File is not a zip file":
            raise ArchiveError("truncated archive: the zip central directory at the end of the file "
                               "is missing") from None
        raise ArchiveError(f"damaged zip archive: {e}") from None
    except (OSError, EOFError, ValueError) as e:
        raise ArchiveError(f"damaged zip archive: {_first_line(e)}") from None
    with zf, open(path, "rb") as raw:
        infos = zf.infolist()
        if not infos:
            raise ArchiveError("empty zip archive")
        seen: set[str] = set()
        data_offset: dict[str, int] = {}
        for info in infos:
            if info.filename in seen:
                raise ArchiveError(f"damaged archive: entry {info.filename} appears twice")
            seen.add(info.filename)
            _check_method(info)
            data_offset[info.filename] = _data_offset(raw, info, file_size)
        prefix = infos[0].filename.split("/", 1)[0]  # torch reads every record under this folder
        refs = _storage_refs(zf, prefix, seen)
        storages = _check_storages(zf, prefix, refs)
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED:
                _verify_compressed(zf, info)
        why = _why_not_mappable(path, prefix, storages, data_offset)
    return ArchivePlan(mappable=not why, why_copied=why, storages=len(refs))


# ----------------------------------------------------------------------------------- entries
def _check_method(info: zipfile.ZipInfo) -> None:
    if info.flag_bits & _ENCRYPTED:
        raise ArchiveError(f"entry {info.filename} is encrypted, which PyTorch cannot read")
    if info.flag_bits & _PATCHED_DATA:
        raise ArchiveError(f"entry {info.filename} holds zip patch data, which PyTorch cannot read")
    if info.compress_type not in READABLE_METHODS:
        method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
        raise ArchiveError(f"entry {info.filename} is compressed with {method}; "
                           f"PyTorch reads only stored or DEFLATE entries")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise ArchiveError(f"size mismatch: entry {info.filename} is stored uncompressed but declares "
                           f"{info.compress_size} stored bytes for {info.file_size} bytes of data")


def _data_offset(raw, info: zipfile.ZipInfo, file_size: int) -> int:  # noqa: ANN001 - a binary file
    """Where the entry's data starts, from its local header; the data must lie inside the file."""
    if info.header_offset + _LOCAL_HEADER.size > file_size:
        raise ArchiveError(f"truncated archive: entry {info.filename} starts at byte {info.header_offset}, "
                           f"the file has {file_size} bytes")
    raw.seek(info.header_offset)
    fields = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
    if fields[0] != ZIP_LOCAL_MAGIC:
        raise ArchiveError(f"damaged archive: no local header for entry {info.filename} at byte {info.header_offset}")
    name_length, extra_length = fields[-2], fields[-1]
    local_name = raw.read(name_length)
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    if local_name.decode(encoding, "replace") != info.orig_filename:
        raise ArchiveError(f"damaged archive: the local header at byte {info.header_offset} names "
                           f"{local_name.decode(encoding, 'replace')!r}, the directory {info.filename!r}")
    start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
    if start + info.compress_size > file_size:
        raise ArchiveError(f"truncated archive: entry {info.filename} needs bytes up to {start + info.compress_size}, "
                           f"the file has {file_size}")
    return start


def _verify_compressed(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Decompress once, in chunks: zipfile checks the length and the CRC that torch does not."""
    got = 0
    try:
        with zf.open(info) as f:
            while chunk := f.read(_VERIFY_CHUNK):
                got += len(chunk)
    except _READ_ERRORS as e:
        raise ArchiveError(f"compressed entry {info.filename} cannot be read: {_first_line(e)}") from None
    if got != info.file_size:
        raise ArchiveError(f"compressed entry {info.filename} cannot be read: it decompresses to {got} bytes, "
                           f"the archive declares {info.file_size}")


# ----------------------------------------------------------------------------------- storages
def _storage_refs(zf: zipfile.ZipFile, prefix: str, names: set[str]) -> list[StorageRef]:
    pkl = f"{prefix}/data.pkl"
    if f"{prefix}/constants.pkl" in names:  # torch.load's own test for TorchScript
        raise ArchiveError("a TorchScript archive made by torch.jit.save, not a checkpoint of tensors")
    if pkl not in names:
        raise ArchiveError(f"no {pkl} in the archive: not written by torch.save")
    try:
        data = zf.read(pkl)
    except _READ_ERRORS as e:
        raise ArchiveError(f"entry {pkl} cannot be read: {_first_line(e)}") from None
    try:
        return storage_refs(data)
    except PickleScanError as e:
        raise ArchiveError(str(e)) from None


def _element_size(storage_type: GlobalName) -> int | None:
    """Bytes per element of a storage type as torch.save names it (``torch FloatStorage``)."""
    if storage_type.module not in ("torch", "torch.storage", "torch.cuda") or not storage_type.name.endswith("Storage"):
        return None
    cls = getattr(torch, storage_type.name, None)
    if cls is torch.UntypedStorage:
        return 1
    with warnings.catch_warnings():  # "TypedStorage is deprecated": only its dtype is read
        warnings.simplefilter("ignore")
        dtype = getattr(cls, "dtype", None) if isinstance(cls, type) else None
    return dtype.itemsize if isinstance(dtype, torch.dtype) else None


def _check_storages(zf: zipfile.ZipFile, prefix: str, refs: list[StorageRef]) -> dict[str, zipfile.ZipInfo]:
    """Each referenced storage: its entry exists and holds exactly the declared bytes."""
    storages: dict[str, zipfile.ZipInfo] = {}
    for ref in refs:
        name = f"{prefix}/data/{ref.key}"
        size = _element_size(ref.storage_type)
        if size is None:
            raise ArchiveError(f"data.pkl: storage {ref.key} has type {ref.storage_type.module}."
                               f"{ref.storage_type.name}, which is not a tensor storage")
        try:
            info = zf.getinfo(name)
        except KeyError:
            raise ArchiveError(f"data.pkl refers to storage {ref.key}, but the archive has no entry {name}") from None
        declared = ref.numel * size
        if info.file_size != declared:
            raise ArchiveError(f"size mismatch: entry {name} holds {info.file_size} bytes, data.pkl declares "
                               f"{ref.numel} {ref.storage_type.name} elements = {declared} bytes")
        storages[name] = info
    return storages


def _why_not_mappable(path: Path, prefix: str, storages: dict[str, zipfile.ZipInfo],
                      data_offset: dict[str, int]) -> str:
    for name, info in storages.items():
        if info.compress_type != zipfile.ZIP_STORED:
            return f"entry {name} is compressed"
        if data_offset[name] % MMAP_ALIGNMENT:
            return f"entry {name} is not {MMAP_ALIGNMENT}-byte aligned"
    if not storages:
        return ""
    try:  # the offsets torch.load(mmap=True) will use, from torch's own zip reader
        reader = torch._C.PyTorchFileReader(str(path))
        for name, info in storages.items():
            record = name[len(prefix) + 1:]
            if (reader.get_record_offset(record) != data_offset[name]
                    or reader.get_record_size(record) != info.file_size):
                return f"torch's zip reader places entry {name} elsewhere"
    except Exception as e:  # noqa: BLE001 - no such API in this torch, or its reader refuses the file
        return f"torch's zip reader cannot locate the entries ({_first_line(e)})"
    return ""


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= 120 else text[:117] + "..."
