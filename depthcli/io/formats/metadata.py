"""How an output was made, carried inside it: one JSON object under the key ``depthcli``.

PNG outputs hold it in a ``tEXt`` chunk (written here, right after ``IHDR``, so readers that
stop at the first ``IDAT`` still see it), EXR in a string header attribute, PLY in a ``comment``
header line, and ``--meta`` adds a sidecar ``<stem>_depth.json`` beside any output (the only
place ``.npy`` and ``.mp4`` outputs can carry it). ``read_metadata`` finds it again in any of
them for ``depthcli info``. The JSON is ASCII (``ensure_ascii``) and on one line, so it fits a
Latin-1 ``tEXt`` chunk and a PLY comment unchanged.
"""
from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

KEY = "depthcli"  # the PNG keyword, EXR attribute name and PLY comment word
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXR_MAGIC = b"\x76\x2f\x31\x01"
NPY_MAGIC = b"\x93NUMPY"
_MAX_JSON_BYTES = 16 * 1024 * 1024  # a sidecar bigger than this is not ours (long videos stay far below)


class MetadataError(Exception):
    """A file whose metadata cannot be read; the message is one line (without the file name)."""


def to_json(meta: dict) -> str:
    """The one-line ASCII JSON text that goes into every output."""
    return json.dumps(meta, ensure_ascii=True, separators=(", ", ": "), allow_nan=False)


def sidecar_path(output: Path) -> Path:
    """``out/a_depth.png`` -> ``out/a_depth.json`` (the ``--meta`` sidecar of an output)."""
    return Path(output).with_suffix(".json")


def sidecar_bytes(meta: dict) -> bytes:
    return (json.dumps(meta, ensure_ascii=True, indent=2, allow_nan=False) + "\n").encode("ascii")


# ------------------------------------------------------------------------------- our own outputs
# <stem>_depth.<suffix>, and a sky mask <stem>_sky.png
OUTPUT_NAME = re.compile(r"(_depth\.(png|exr|npy|ply)|_sky\.png)\Z", re.IGNORECASE)
FRAMES_FOLDER_MARK = "_depth_frames"  # <stem>_depth_frames/ holds a video's --frames
_HEADER_SCAN_BYTES = 1 << 20  # how far into a file its header is looked for (ours sits at the start)


def named_like_output(path: str | Path) -> bool:
    """Whether a file's name follows depthcli's output rule: ``<stem>_depth.png|exr|npy|ply``,
    a sky mask ``<stem>_sky.png``, or anything inside a ``<stem>_depth_frames/`` folder."""
    path = Path(path)
    return bool(OUTPUT_NAME.search(path.name)) or path.parent.name.endswith(FRAMES_FOLDER_MARK)


def is_depthcli_output(path: str | Path) -> bool:
    """A file depthcli wrote, told cheaply (a folder of thousands of photos is checked): named by
    the output rule AND carrying depthcli metadata in its header (PNG text chunk, EXR attribute,
    PLY comment), of which only the first bytes are read. An ``.npy`` holds no metadata; its name
    alone decides: it is never an image anyway, so leaving one out only spares a failure line."""
    path = Path(path)
    if not named_like_output(path):
        return False
    if path.suffix.lower() == ".npy":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if head.startswith(PNG_SIGNATURE):
                return _png_has_key(f)
            if head.startswith(EXR_MAGIC):
                return _exr_has_key(f)
            if head.startswith(b"ply"):
                return _ply_has_key(f)
    except OSError:
        return False  # unreadable: the input step says why
    return False


def _png_has_key(f) -> bool:  # noqa: ANN001 - a binary file positioned after the signature
    """A text chunk keyed ``depthcli`` before the image data (only chunk headers are read)."""
    pos = len(PNG_SIGNATURE)
    while pos < _HEADER_SCAN_BYTES:
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8 or header[4:] in (b"IDAT", b"IEND"):
            return False
        if header[4:] in (b"tEXt", b"zTXt", b"iTXt") and f.read(len(KEY) + 1) == KEY.encode() + b"\0":
            return True
        pos += 12 + struct.unpack(">I", header[:4])[0]
    return False


def _exr_has_key(f) -> bool:  # noqa: ANN001 - a binary file positioned after magic and version
    """A header attribute named ``depthcli`` (attributes: name NUL, type NUL, int32 size, value)."""
    data = f.read(_HEADER_SCAN_BYTES)
    pos = 0
    while pos < len(data) and data[pos] != 0:
        name_end = data.find(b"\0", pos)
        type_end = data.find(b"\0", name_end + 1)
        if name_end < 0 or type_end < 0 or type_end + 4 > len(data):
            return False
        if data[pos:name_end] == KEY.encode():
            return True
        (size,) = struct.unpack("<i", data[type_end + 1:type_end + 5])
        if size < 0:
            return False
        pos = type_end + 5 + size
    return False


def _ply_has_key(f) -> bool:  # noqa: ANN001 - a binary file positioned after "ply"
    """A ``comment depthcli`` line before ``end_header``."""
    f.seek(0)
    for line in f.read(_HEADER_SCAN_BYTES).split(b"\n"):
        if line.startswith(f"comment {KEY} ".encode()):
            return True
        if line.strip() == b"end_header":
            return False
    return False


# ------------------------------------------------------------------------------- PNG
def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def add_png_text(png: bytes, text: str, key: str = KEY) -> bytes:
    """``png`` with a ``tEXt`` chunk ``key`` = ``text`` inserted after its ``IHDR``.

    ``tEXt`` is Latin-1 and uncompressed: every PNG reader keeps or shows it (``exiftool``,
    ``identify -verbose``, Pillow's ``.text``), and our JSON is ASCII anyway."""
    if not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG with an IHDR chunk")
    (ihdr_len,) = struct.unpack(">I", png[8:12])
    end = 8 + 12 + ihdr_len  # signature + IHDR (length, type, data, crc)
    payload = key.encode("latin-1") + b"\0" + text.encode("latin-1")
    return png[:end] + _png_chunk(b"tEXt", payload) + png[end:]


def read_png_text(data: bytes) -> dict[str, str]:
    """Every text chunk (``tEXt``, ``zTXt``, ``iTXt``) of a PNG as {keyword: text}; a chunk
    that runs past the end or fails its CRC is a ``MetadataError``."""
    if not data.startswith(PNG_SIGNATURE):
        raise MetadataError("not a PNG file")
    texts: dict[str, str] = {}
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(data):
            raise MetadataError(f"truncated PNG ({kind.decode('latin-1', 'replace')} chunk runs past the end)")
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            if zlib.crc32(kind + body) != crc:
                raise MetadataError(f"corrupt PNG (bad CRC in a {kind.decode()} chunk)")
            key, text = _decode_text_chunk(kind, body)
            texts.setdefault(key, text)
        if kind == b"IEND":
            return texts
        pos += 12 + length
    raise MetadataError("truncated PNG (no IEND chunk)")


def _decode_text_chunk(kind: bytes, body: bytes) -> tuple[str, str]:
    key, sep, rest = body.partition(b"\0")
    if not sep:
        raise MetadataError(f"corrupt PNG ({kind.decode()} chunk without a keyword)")
    try:
        if kind == b"tEXt":
            return key.decode("latin-1"), rest.decode("latin-1")
        if kind == b"zTXt":
            return key.decode("latin-1"), zlib.decompress(rest[1:]).decode("latin-1")
        compressed, _method, rest = rest[0], rest[1], rest[2:]
        _lang, _, rest = rest.partition(b"\0")
        _translated, _, text = rest.partition(b"\0")
        return key.decode("latin-1"), (zlib.decompress(text) if compressed else text).decode("utf-8")
    except (zlib.error, UnicodeDecodeError, IndexError) as e:
        raise MetadataError(f"corrupt PNG ({kind.decode()} chunk: {e})") from None


# ------------------------------------------------------------------------------- any output
def parse_json(text: str) -> dict:
    """Our JSON object, or a ``MetadataError`` saying why not."""
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise MetadataError(f"the {KEY} metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or KEY not in meta:
        raise MetadataError(f"the JSON holds no {KEY} metadata")
    return meta


def read_metadata(path: str | Path) -> tuple[str, dict]:
    """(what the file is, its metadata) for a depthcli output: PNG, EXR, PLY or a JSON sidecar;
    for an ``.npy`` (or anything else) with a sidecar beside it, the sidecar's. Raises
    ``MetadataError`` (one line) for foreign, corrupt or unreadable files."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except IsADirectoryError:
        raise MetadataError("is a folder") from None
    except OSError as e:
        raise MetadataError(e.strerror or str(e)) from None
    if head.startswith(PNG_SIGNATURE):
        texts = read_png_text(path.read_bytes())
        if KEY not in texts:
            raise MetadataError(f"PNG without {KEY} metadata (not written by depthcli, or stripped)")
        return "PNG", parse_json(texts[KEY])
    if head.startswith(EXR_MAGIC):
        from .exr import read_exr_metadata

        return "EXR", read_exr_metadata(path)
    if head.startswith(b"ply\n") or head.startswith(b"ply\r\n"):
        from .ply import VERTEX, read_ply_header

        header = read_ply_header(path)
        if header.meta is None:
            raise MetadataError(f"PLY without {KEY} metadata (not written by depthcli)")
        if header.format == "binary_little_endian" and [n for _, n in header.properties] == list(VERTEX.names):
            size, expected = path.stat().st_size, header.data_offset + header.vertex_count * VERTEX.itemsize
            if size != expected:
                raise MetadataError(f"truncated or corrupt PLY: {size} bytes, the header says {expected}")
        return "PLY", header.meta
    if head.lstrip()[:1] == b"{":
        if path.stat().st_size > _MAX_JSON_BYTES:
            raise MetadataError("JSON file too large to be a depthcli sidecar")
        try:
            text = path.read_text("utf-8")
        except UnicodeDecodeError:
            raise MetadataError("not UTF-8 JSON") from None
        return "JSON sidecar", parse_json(text)
    what = "NPY" if head.startswith(NPY_MAGIC) else path.suffix.lstrip(".").upper() or "file"
    side = sidecar_path(path)
    if side != path and side.is_file():
        kind, meta = read_metadata(side)
        if kind == "JSON sidecar":
            return f"{what} (metadata from {side.name})", meta
    video_side = _video_sidecar(path)
    if video_side is not None and video_side.is_file():  # a --frames .npy: its video's sidecar says it
        kind, meta = read_metadata(video_side)
        if kind == "JSON sidecar":
            return f"{what} (a video frame; metadata from ../{video_side.name})", meta
    if video_side is not None and head.startswith(NPY_MAGIC):
        raise MetadataError(f"a video's --frames .npy carries no metadata; it is in {video_side}, which is "
                            f"not there")
    if head.startswith(NPY_MAGIC):
        raise MetadataError(f".npy files carry no metadata and there is no {side.name} beside it "
                            f"(`depthcli image --meta` writes one)")
    raise MetadataError("not a depthcli output (PNG, EXR, PLY or JSON sidecar)")


def _video_sidecar(path: Path) -> Path | None:
    """``clip_depth_frames/clip_000005.npy`` -> ``clip_depth.json`` beside the folder: where a
    video's frames are described (None when ``path`` is not in a ``_depth_frames`` folder)."""
    folder = path.parent
    if not folder.name.endswith(FRAMES_FOLDER_MARK):
        return None
    return folder.parent / f"{folder.name.removesuffix('_frames')}.json"
