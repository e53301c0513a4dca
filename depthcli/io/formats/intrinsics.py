"""The pinhole camera a point cloud is unprojected with, and where its focal length came from.

Precedence: ``--focal PX``, then ``--fov DEG`` (horizontal), then the photo's EXIF, then a
default of 60 degrees horizontal (the field of view of Hypersim, the indoor metric model's
training renders). The principal point is the image centre. The choice is recorded as
``source`` so the metadata says how the geometry was made.

EXIF focal lengths become pixels in one of two ways:
- ``FocalLengthIn35mmFilm`` (most phones and cameras): the focal length a 36 x 24 mm frame would
  need for the same *diagonal* field of view (CIPA DC-008), so
  ``f_px = f35 / 43.267 mm * hypot(width_px, height_px)``; the diagonal does not care about
  the orientation or the aspect ratio;
- else ``FocalLength`` (mm) x ``FocalPlaneXResolution`` (pixels per unit of the sensor), scaled
  by how much the image was resized since (``PixelXDimension``).
"""
from __future__ import annotations

import math
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_FOV_DEG = 60.0
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)  # 43.267 mm
_EXIF_HEAD_BYTES = 1 << 20  # EXIF sits at the start of JPEG/PNG/TIFF/WebP files; 1 MiB is ample


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics in pixels, for pixel centres at (col + 0.5, row + 0.5)."""

    fx: float
    fy: float
    cx: float
    cy: float
    source: str  # how fx was chosen, in words

    def to_dict(self) -> dict:
        return asdict(self)


def pinhole_camera(height: int, width: int, *, focal_px: float | None = None, fov_deg: float | None = None,
                   exif_focal: tuple[float, str] | None = None) -> Camera:
    """The camera for an image of ``height`` x ``width``: the first of ``focal_px``, ``fov_deg``
    (horizontal), ``exif_focal`` ((pixels, how)) or the default field of view."""
    if focal_px is not None:
        f, source = float(focal_px), f"--focal {focal_px:g} px"
    elif fov_deg is not None:
        f, source = focal_from_fov(width, fov_deg), f"--fov {fov_deg:g} deg (horizontal)"
    elif exif_focal is not None:
        f, source = exif_focal
    else:
        f = focal_from_fov(width, DEFAULT_FOV_DEG)
        source = (f"default: {DEFAULT_FOV_DEG:g} deg horizontal field of view (no EXIF focal length; "
                  f"give --focal or --fov)")
    return Camera(fx=f, fy=f, cx=width / 2.0, cy=height / 2.0, source=source)


def focal_from_fov(width: int, fov_deg: float) -> float:
    """Focal length in pixels for a horizontal field of view over ``width`` pixels."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"field of view must be between 0 and 180 degrees, got {fov_deg:g}")
    return width / 2.0 / math.tan(math.radians(fov_deg) / 2.0)


# ------------------------------------------------------------------------------- EXIF
def exif_focal_px(source: str | Path | bytes | None, height: int, width: int) -> tuple[float, str] | None:
    """(focal length in pixels, how it was read) from the EXIF of an image file or its bytes;
    None when there is no usable EXIF focal length (never an error: EXIF is often broken)."""
    if source is None:
        return None
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            head = bytes(source[:_EXIF_HEAD_BYTES])
        else:
            with open(source, "rb") as f:
                head = f.read(_EXIF_HEAD_BYTES)
        tags = read_exif_tags(find_exif(head))
    except (OSError, ValueError, struct.error, IndexError):
        return None
    f35 = tags.get(0xA405)
    if f35:
        f = float(f35) / FULL_FRAME_DIAGONAL_MM * math.hypot(width, height)
        return f, f"EXIF FocalLengthIn35mmFilm {float(f35):g} mm -> {f:.1f} px (35 mm-equivalent, over the diagonal)"
    focal_mm, res, unit = tags.get(0x920A), tags.get(0xA20E), tags.get(0xA210, 2)
    unit_mm = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}.get(int(unit) if unit else 2)
    if focal_mm and res and unit_mm:
        f = float(focal_mm) * float(res) / unit_mm
        px, py = tags.get(0xA002), tags.get(0xA003)
        if px and py:  # resized since the camera wrote it (orientation-proof: longer sides)
            f *= max(width, height) / max(float(px), float(py))
        return f, (f"EXIF FocalLength {float(focal_mm):g} mm x FocalPlaneXResolution -> {f:.1f} px")
    return None


def find_exif(head: bytes) -> bytes:
    """The TIFF-structured EXIF block of a JPEG (APP1), PNG (eXIf), WebP (EXIF) or TIFF file."""
    if head.startswith(b"\xff\xd8"):
        pos = 2
        while pos + 4 <= len(head) and head[pos] == 0xFF:
            marker = head[pos + 1]
            if marker in (0xD9, 0xDA):
                break
            (length,) = struct.unpack(">H", head[pos + 2:pos + 4])
            payload = head[pos + 4:pos + 2 + length]
            if marker == 0xE1 and payload.startswith(b"Exif\0\0"):
                return payload[6:]
            pos += 2 + length
    elif head.startswith(b"\x89PNG\r\n\x1a\n"):
        pos = 8
        while pos + 8 <= len(head):
            (length,) = struct.unpack(">I", head[pos:pos + 4])
            kind = head[pos + 4:pos + 8]
            if kind == b"eXIf":
                return head[pos + 8:pos + 8 + length]
            if kind in (b"IDAT", b"IEND"):
                break
            pos += 12 + length
    elif head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        pos = 12
        while pos + 8 <= len(head):
            kind, (length,) = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])
            if kind == b"EXIF":
                data = head[pos + 8:pos + 8 + length]
                return data[6:] if data.startswith(b"Exif\0\0") else data
            pos += 8 + length + (length & 1)
    elif head[:4] in (b"II*\0", b"MM\0*"):
        return head
    raise ValueError("no EXIF")


def read_exif_tags(tiff: bytes) -> dict[int, float | int]:
    """The numeric tags of IFD0 and the Exif sub-IFD (first value of each; rationals as floats)."""
    if tiff[:2] == b"II":
        endian = "<"
    elif tiff[:2] == b"MM":
        endian = ">"
    else:
        raise ValueError("not TIFF-structured EXIF")
    (ifd0,) = struct.unpack(endian + "I", tiff[4:8])
    tags = _read_ifd(tiff, ifd0, endian)
    sub = tags.get(0x8769)
    if sub:
        tags.update(_read_ifd(tiff, int(sub), endian))
    return tags


_TYPE_SIZES = {3: 2, 4: 4, 5: 8, 9: 4, 10: 8}  # SHORT, LONG, RATIONAL, SLONG, SRATIONAL


def _read_ifd(tiff: bytes, offset: int, endian: str) -> dict[int, float | int]:
    (count,) = struct.unpack(endian + "H", tiff[offset:offset + 2])
    tags: dict[int, float | int] = {}
    for i in range(min(count, 1000)):
        entry = tiff[offset + 2 + 12 * i:offset + 14 + 12 * i]
        if len(entry) < 12:
            break
        tag, kind, n = struct.unpack(endian + "HHI", entry[:8])
        size = _TYPE_SIZES.get(kind)
        if size is None or n < 1:
            continue
        if size <= 4:
            raw = entry[8:8 + size]
        else:
            (at,) = struct.unpack(endian + "I", entry[8:12])
            raw = tiff[at:at + size]
            if len(raw) < size:
                continue
        if kind == 3:
            tags[tag] = struct.unpack(endian + "H", raw)[0]
        elif kind in (4, 9):
            tags[tag] = struct.unpack(endian + ("I" if kind == 4 else "i"), raw)[0]
        else:
            num, den = struct.unpack(endian + ("II" if kind == 5 else "ii"), raw)
            if den:
                tags[tag] = num / den
    return tags
