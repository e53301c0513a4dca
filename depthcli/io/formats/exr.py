"""Float depth as OpenEXR: one float32 channel ``Z`` (the name Nuke, Blender and the OpenEXR
docs use for depth), ZIP-compressed (lossless), the JSON metadata in a string attribute.

OpenCV's wheels cannot write EXR, so this uses the ``openexr`` package (imported here only,
lazily: ``--help`` and the other formats never pay for it). Files are built in memory, so the
atomic writer and ``-o -`` treat them like any other output.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .metadata import KEY, MetadataError, parse_json, to_json

CHANNEL = "Z"


def encode_exr(depth_hw: np.ndarray, meta: dict | None = None) -> bytes:
    """The bytes of a single-part scanline EXR holding ``depth_hw`` (float32, unchanged: NaN and
    inf survive) in channel ``Z``."""
    import OpenEXR

    depth = np.ascontiguousarray(depth_hw, dtype=np.float32)
    if depth.ndim != 2 or not depth.size:
        raise ValueError(f"EXR depth needs a non-empty HxW array, got shape {depth.shape}")
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    if meta is not None:
        header[KEY] = to_json(meta)
    buf = io.BytesIO()
    OpenEXR.File(header, {CHANNEL: depth}).write(buf)
    return buf.getvalue()


@contextlib.contextmanager
def _native_output_captured() -> Iterator[list[str]]:
    """The library reports damaged files by printing (to the C stdout and stderr) and returning
    what it could read; capture both fds while it reads, so the caller can turn the first line
    into one error instead of letting it reach the user's terminal or pipe."""
    lines: list[str] = []
    saved = []
    with tempfile.TemporaryFile() as sink:
        for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
            with contextlib.suppress(Exception):
                stream.flush()
            with contextlib.suppress(OSError):
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
        try:
            yield lines
        finally:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            lines.extend(line.strip() for line in sink.read().decode("utf-8", "replace").splitlines() if line.strip())


def read_exr(source: str | Path | bytes) -> tuple[np.ndarray, dict | None]:
    """(the ``Z`` channel as float32 HxW, our metadata or None) of an EXR file or its bytes; a
    file whose pixels cannot all be decoded (truncated, damaged) is a ``MetadataError``."""
    import OpenEXR

    stream = io.BytesIO(source) if isinstance(source, bytes) else io.BytesIO(Path(source).read_bytes())
    f = channels = None
    failure = None
    try:
        with _native_output_captured() as complaints:
            f = OpenEXR.File(stream, separate_channels=True)
            channels = f.channels()
    except (RuntimeError, OSError, ValueError) as e:
        failure = str(e).strip() or type(e).__name__
    if f is None:
        raise MetadataError(f"not a readable EXR file ({failure})")
    if complaints or failure is not None:  # the library's own words first: they say where
        raise MetadataError(f"truncated or corrupt EXR pixel data ({(complaints or [failure])[-1]})")
    if CHANNEL not in channels:
        raise MetadataError(f"EXR without a {CHANNEL} channel (has {', '.join(sorted(channels)) or 'none'})")
    text = f.header().get(KEY)
    depth = np.asarray(channels[CHANNEL].pixels, dtype=np.float32)
    return depth, parse_json(text) if isinstance(text, str) else None


def read_exr_metadata(path: str | Path) -> dict:
    """Our metadata from an EXR header; the pixels are decoded too, so a damaged file is
    reported rather than described."""
    _depth, meta = read_exr(path)
    if meta is None:
        raise MetadataError(f"EXR without {KEY} metadata (not written by depthcli)")
    return meta
