"""Reading images exactly as ``cv2.imread`` does, but safely.

The depth model's parity with the original Depth-Anything scripts depends on getting the very
pixels ``cv2.imread(path)`` returns (EXIF orientation applied, alpha dropped, gray expanded to
BGR), so every decode goes through OpenCV with ``IMREAD_COLOR | IMREAD_ANYDEPTH``: for 8-bit
files that is bit-identical to ``IMREAD_COLOR`` (checked for every codec of this build), and
16-bit files keep their precision instead of being cut to 8 bits.

What is added around OpenCV: a pixel-count guard read from the file header before any decoding
(decompression bombs), and one-line ``ImageReadError`` messages instead of ``None``, ``cv2.error``
or codec chatter on stderr.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

# Pillow's hard limit (2 x its warning threshold of 89.5 MP): far above any camera, far below
# the gigabytes a crafted header can ask for. ``None`` disables the guard.
DEFAULT_MAX_PIXELS = 178_956_970

# Files of unknown type are only handed to OpenCV when they are small enough to be an image
# in a format we do not sniff; a 10 GB video passed by mistake is refused without reading it.
_UNKNOWN_FORMAT_MAX_BYTES = 256 * 1024 * 1024

_DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH

_CANDIDATE_EXTENSIONS = (
    "bmp", "dib", "jpg", "jpeg", "jpe", "png", "tif", "tiff", "webp", "jp2", "gif", "avif",
    "pbm", "pgm", "ppm", "pnm", "pam", "pfm", "sr", "ras", "hdr", "pic", "exr",
)  # fmt: skip
# Only what this OpenCV build can read (EXR, for one, is optional); OpenCV has no reader query,
# but its readers and writers come from the same codec list, so the writer query is the proxy.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    ext for ext in _CANDIDATE_EXTENSIONS if cv2.haveImageWriter(f"x.{ext}")
)


class ImageReadError(Exception):
    """An input that is not a readable image; the message is one line naming the reason."""


def set_opencv_logging(verbose: bool) -> None:
    """OpenCV (and the FFmpeg inside it) log warnings for every bad file to stderr; users should
    see only our one-line errors, so they are silenced unless ``verbose`` (e.g. ``--debug``).

    A level the user chose with ``OPENCV_LOG_LEVEL`` / ``OPENCV_FFMPEG_LOGLEVEL`` is kept.
    """
    if "OPENCV_LOG_LEVEL" not in os.environ:
        level = cv2.utils.logging.LOG_LEVEL_WARNING if verbose else cv2.utils.logging.LOG_LEVEL_SILENT
        cv2.utils.logging.setLogLevel(level)
    # Read by OpenCV when it first opens a video, so setting it here (before any) takes effect.
    if verbose:
        if os.environ.get("OPENCV_FFMPEG_LOGLEVEL") == "-8":
            del os.environ["OPENCV_FFMPEG_LOGLEVEL"]
    else:
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


set_opencv_logging(verbose=False)


def read_image(source: str | Path | bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a file path or encoded bytes to HxWx3 BGR, uint8 (uint16 for 16-bit files).

    Raises ``ImageReadError`` for anything that is not a readable image, and for images whose
    declared size exceeds ``max_pixels`` (checked from the header, before decoding).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageReadError("empty input")
        fmt, dims = _sniff(io.BytesIO(data))
    else:
        fmt, dims, data = _read_file(Path(source))
    if max_pixels is not None and dims is not None:
        _check_pixels(dims[0], dims[1], max_pixels)
    image = _decode(data, fmt, dims)
    if max_pixels is not None:  # formats whose header we do not parse: check after the fact
        _check_pixels(image.shape[1], image.shape[0], max_pixels)
    return image


def _read_file(path: Path) -> tuple[str | None, tuple[int, int] | None, bytes]:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            fmt, dims = _sniff(f)
            if fmt is None and size > _UNKNOWN_FORMAT_MAX_BYTES:
                raise ImageReadError("not an image (or unsupported format)")
            f.seek(0)
            data = f.read()
    except FileNotFoundError:
        raise ImageReadError("no such file") from None
    except IsADirectoryError:
        raise ImageReadError("is a directory, not an image") from None
    except PermissionError:
        raise ImageReadError("permission denied") from None
    except OSError as exc:
        raise ImageReadError(f"cannot read file: {exc.strerror or exc}") from None
    if not data:
        raise ImageReadError("empty file")
    return fmt, dims, data


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageReadError(
            f"image is {width}x{height} = {_megapixels(width * height)}, over the "
            f"{_megapixels(max_pixels)} limit (--max-pixels to raise it)"
        )


def _megapixels(n: int) -> str:
    return f"{n // 1_000_000} MP" if n >= 1_000_000 else f"{n} pixels"


def _decode(data: bytes, fmt: str | None, dims: tuple[int, int] | None) -> np.ndarray:
    buf = np.frombuffer(data, np.uint8)
    image = _imdecode(buf, _DECODE_FLAGS, fmt, dims)
    if image is not None and image.dtype not in (np.uint8, np.uint16):
        # Float (HDR, PFM, float TIFF) or signed samples: fall back to what imread gives, and
        # for float files it cannot read at all, to OpenCV's own HDR convention (x255, clipped).
        plain = _imdecode(buf, cv2.IMREAD_COLOR, fmt, dims)
        if plain is not None:
            image = plain
        elif image.dtype.kind == "f":
            image = np.clip(np.rint(np.nan_to_num(image) * 255.0), 0, 255).astype(np.uint8)
        else:
            raise ImageReadError(f"unsupported sample type ({image.dtype})")
    if image is None:
        if fmt is None:
            raise ImageReadError("not an image (or unsupported format)")
        if fmt.lower() not in IMAGE_EXTENSIONS:
            raise ImageReadError(f"{fmt.upper()} images are not supported by this OpenCV build")
        raise ImageReadError("truncated or corrupt image data")
    if image.ndim == 2:  # not expected with IMREAD_COLOR; kept so callers can rely on HxWx3
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = np.ascontiguousarray(image[:, :, :3])
    return image


def _imdecode(
    buf: np.ndarray, flags: int, fmt: str | None, dims: tuple[int, int] | None
) -> np.ndarray | None:
    quiet = _native_stderr_filtered() if fmt in (None, "png", "jpeg") else contextlib.nullcontext()
    try:
        with quiet:
            return cv2.imdecode(buf, flags)
    except MemoryError:
        raise ImageReadError("not enough memory to decode this image") from None
    except cv2.error as exc:
        text = str(exc)
        if "CV_IO_MAX_IMAGE_PIXELS" in text or "validateInputImageSize" in text:
            size = f"{dims[0]}x{dims[1]} " if dims else ""
            raise ImageReadError(
                f"image {size}is over OpenCV's size limit (OPENCV_IO_MAX_IMAGE_PIXELS raises it)"
            ) from None
        if "Insufficient memory" in text or "Failed to allocate" in text:
            raise ImageReadError("not enough memory to decode this image") from None
        return None


# --- libpng / libjpeg chatter -------------------------------------------------------------
# Both libraries print warnings ("libpng warning: iCCP: known incorrect sRGB profile",
# "Corrupt JPEG data: 69 extraneous bytes before marker") with fprintf straight to the C
# stderr, past OpenCV's logging. The only way to hide them is to point fd 2 elsewhere while
# decoding. fd 2 is process-wide, so: one decode at a time holds it (lock), and whatever else
# landed there meanwhile (another thread's output) is written back afterwards; only lines that
# look like those libraries' messages are dropped.
_STDERR_LOCK = threading.Lock()
_CODEC_NOISE = re.compile(
    rb"^(libpng (warning|error)|Corrupt JPEG data|Premature end of JPEG|Warning: |Invalid |Bogus |"
    rb"Unsupported |Inconsistent |Improper |Unknown |Not a JPEG|Huffman |Quantization table|"
    rb"Corrupt |Bad |Empty |Unexpected |Sampling factors|Scan script|Backing store)"
)


@contextlib.contextmanager
def _native_stderr_filtered() -> Iterator[None]:
    """Hide C-level codec messages written to fd 2 while the block runs (see above)."""
    with _STDERR_LOCK:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all (daemon): nothing to protect
            yield
            return
        try:
            sink = tempfile.TemporaryFile()
        except OSError:
            os.close(saved)
            yield
            return
        try:
            with contextlib.suppress(Exception):
                if sys.stderr is not None:
                    sys.stderr.flush()
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                _replay(sink, saved)
        finally:
            os.close(saved)
            sink.close()


def _replay(sink: BinaryIO, fd: int) -> None:
    with contextlib.suppress(OSError):
        sink.seek(0)
        captured = sink.read()
        if captured:
            kept = b"".join(
                line for line in captured.splitlines(keepends=True) if not _CODEC_NOISE.match(line)
            )
            if kept:
                os.write(fd, kept)


# --- header sniffing: format and declared size, without decoding ----------------------------


def _sniff(f: BinaryIO) -> tuple[str | None, tuple[int, int] | None]:
    """(format name, (width, height) or None) from the first bytes; never raises on bad data."""
    head = f.read(64)
    fmt = _format_of(head)
    if fmt is None:
        return None, None
    try:
        dims = _DIMENSION_READERS[fmt](f, head) if fmt in _DIMENSION_READERS else None
    except (struct.error, ValueError, IndexError, OverflowError, OSError):
        dims = None
    if dims is not None and (dims[0] <= 0 or dims[1] <= 0):
        dims = None  # nonsense: let the decoder give its verdict
    return fmt, dims


_BMP_HEADER_SIZES = {struct.pack("<I", n) for n in (12, 16, 40, 52, 56, 64, 108, 124)}


def _format_of(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM") and head[14:18] in _BMP_HEADER_SIZES:
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:1] == b"P" and head[1:2] in b"1234567Ff" and head[2:3].isspace():
        return "pfm" if head[1:2] in b"Ff" else "pnm"
    if head.startswith(b"\x59\xa6\x6a\x95"):
        return "ras"
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f\xff\x51"):
        return "jp2"
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):
        return "hdr"
    if head.startswith(b"\x76\x2f\x31\x01"):
        return "exr"
    if head[4:8] == b"ftyp" and (b"avif" in head[8:32] or b"avis" in head[8:32]):
        return "avif"
    return None


def _png_dims(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    if head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_dims(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    """Walk the marker segments (seeking past EXIF/ICC payloads) up to the first SOFn."""
    f.seek(2)
    for _ in range(10_000):
        byte = f.read(1)
        if byte != b"\xff":
            return None
        marker = 0xFF
        while marker == 0xFF:  # fill bytes
            b = f.read(1)
            if not b:
                return None
            marker = b[0]
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        (length,) = struct.unpack(">H", f.read(2))
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            _, height, width = struct.unpack(">BHH", f.read(5))
            return (width, height) if height else None  # height 0: defined later by DNL
        f.seek(length - 2, os.SEEK_CUR)
    return None


def _gif_dims(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    return struct.unpack("<HH", head[6:10])


def _bmp_dims(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    (header_size,) = struct.unpack("<I", head[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack("<HH", head[18:22])
    width, height = struct.unpack("<ii", head[18:26])
    return width, abs(height)  # negative height: top-down rows


def _webp_dims(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and head[20] == 0x2F:
        (bits,) = struct.unpack("<I", head[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _tiff_dims(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    """ImageWidth/ImageLength of the first IFD (the page OpenCV reads), classic or BigTIFF."""
    e = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    if big:
        (offset,) = struct.unpack(e + "Q", head[8:16])
        count_fmt, entry_size, count_size = "Q", 20, 8
    else:
        (offset,) = struct.unpack(e + "I", head[4:8])
        count_fmt, entry_size, count_size = "H", 12, 2
    f.seek(offset)
    (count,) = struct.unpack(e + count_fmt, f.read(count_size))
    table = f.read(min(count, 4096) * entry_size)
    found: dict[int, int] = {}
    for i in range(len(table) // entry_size):
        entry = table[i * entry_size : (i + 1) * entry_size]
        tag, typ = struct.unpack(e + "HH", entry[:4])
        if tag in (256, 257):
            value = entry[12:] if big else entry[8:]
            if typ == 3:
                (found[tag],) = struct.unpack(e + "H", value[:2])
            elif typ == 4:
                (found[tag],) = struct.unpack(e + "I", value[:4])
            elif typ == 16:
                (found[tag],) = struct.unpack(e + "Q", value[:8])
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def _pnm_tokens(f: BinaryIO, count: int) -> list[bytes]:
    f.seek(0)
    text = re.sub(rb"#[^\n\r]*", b" ", f.read(4096))
    return text.split()[:count]


def _pnm_dims(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    if head[1:2] == b"7":  # PAM: "WIDTH n" / "HEIGHT n" lines
        f.seek(0)
        header = f.read(4096)
        w = re.search(rb"^WIDTH\s+(\d+)", header, re.M)
        h = re.search(rb"^HEIGHT\s+(\d+)", header, re.M)
        return (int(w.group(1)), int(h.group(1))) if w and h else None
    tokens = _pnm_tokens(f, 3)
    return int(tokens[1]), int(tokens[2])


def _ras_dims(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    return struct.unpack(">ii", head[4:12])


def _jp2_dims(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    if head.startswith(b"\xff\x4f\xff\x51"):  # bare codestream: SIZ segment
        xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", head[8:24])
        return xsiz - xosiz, ysiz - yosiz
    pos, end = 0, None
    for _ in range(64):
        f.seek(pos)
        box = f.read(16)
        if len(box) < 8:
            return None
        length, kind = struct.unpack(">I4s", box[:8])
        header = 8
        if length == 1:
            (length,) = struct.unpack(">Q", box[8:16])
            header = 16
        if kind == b"jp2h":  # superbox: step inside
            pos, end = pos + header, pos + length
            continue
        if kind == b"ihdr":
            height, width = struct.unpack(">II", box[8:16])
            return width, height
        if length == 0 or (end is not None and pos + length > end):
            return None
        pos += length
    return None


def _hdr_dims(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    f.seek(0)
    header = f.read(8192)
    m = re.search(rb"\n\n([-+])([XY]) (\d+) ([-+])([XY]) (\d+)", header)
    if not m:
        return None
    first, second = int(m.group(3)), int(m.group(6))
    return (second, first) if m.group(2) == b"Y" else (first, second)


def _avif_dims(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    """Largest 'ispe' (image spatial extent) property among the first 64 KiB of boxes."""
    f.seek(0)
    meta = f.read(65536)
    best = None
    for m in re.finditer(rb"ispe", meta):
        w, h = struct.unpack(">II", meta[m.end() + 4 : m.end() + 12])
        if best is None or w * h > best[0] * best[1]:
            best = (w, h)
    return best


_DIMENSION_READERS = {
    "png": _png_dims,
    "jpeg": _jpeg_dims,
    "gif": _gif_dims,
    "bmp": _bmp_dims,
    "webp": _webp_dims,
    "tiff": _tiff_dims,
    "pnm": _pnm_dims,
    "pfm": lambda f, head: _pnm_dims(f, b"P6"),
    "ras": _ras_dims,
    "jp2": _jp2_dims,
    "hdr": _hdr_dims,
    "avif": _avif_dims,
}
