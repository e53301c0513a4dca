"""Point clouds as binary little-endian PLY: one vertex per pixel with a finite positive depth.

Vertices are ``x y z`` float32 and ``red green blue`` uchar (the image's colour at that pixel),
15 bytes each, in row-major pixel order. Coordinates are the OpenCV camera's: x right, y down,
z forward along the optical axis, in the depth's unit (metres for metric models), with
``x = (col + 0.5 - cx) * z / fx`` and ``y = (row + 0.5 - cy) * z / fy``. The JSON metadata is
one ``comment depthcli {...}`` header line, which every PLY reader skips (MeshLab, Open3D,
CloudCompare, Blender).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .intrinsics import Camera
from .metadata import KEY, MetadataError, parse_json, to_json

VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
_MAX_HEADER_BYTES = 1 << 20


def point_cloud(depth_z_hw: np.ndarray, image_bgr8: np.ndarray, camera: Camera) -> np.ndarray:
    """The vertices (``VERTEX`` records) of every pixel whose depth is finite and > 0."""
    z = np.asarray(depth_z_hw, dtype=np.float32)
    if image_bgr8.shape[:2] != z.shape or image_bgr8.dtype != np.uint8 or image_bgr8.ndim != 3:
        raise ValueError(f"need an HxWx3 uint8 image of the depth's size {z.shape}, got {image_bgr8.shape}")
    with np.errstate(invalid="ignore"):
        rows, cols = np.nonzero(np.isfinite(z) & (z > 0))
    zs = z[rows, cols].astype(np.float64)
    out = np.empty(rows.size, VERTEX)
    out["x"] = (cols + 0.5 - camera.cx) * zs / camera.fx
    out["y"] = (rows + 0.5 - camera.cy) * zs / camera.fy
    out["z"] = zs
    bgr = image_bgr8[rows, cols]
    out["red"], out["green"], out["blue"] = bgr[:, 2], bgr[:, 1], bgr[:, 0]
    return out


def encode_ply(vertices: np.ndarray, meta: dict | None = None) -> bytes:
    """The bytes of a binary little-endian PLY file of ``vertices`` (``VERTEX`` records)."""
    vertices = np.ascontiguousarray(vertices, dtype=VERTEX)
    lines = ["ply", "format binary_little_endian 1.0"]
    if meta is not None:
        lines.append(f"comment {KEY} {to_json(meta)}")
    lines += [f"element vertex {len(vertices)}", "property float x", "property float y", "property float z",
              "property uchar red", "property uchar green", "property uchar blue", "end_header"]
    return ("\n".join(lines) + "\n").encode("ascii") + vertices.tobytes()


@dataclass
class PlyHeader:
    format: str
    vertex_count: int
    properties: list[tuple[str, str]]  # (type, name) of the vertex element
    meta: dict | None
    data_offset: int  # where the binary body starts


def read_ply_header(source: str | Path | bytes) -> PlyHeader:
    """Parse a PLY header (ours or anyone's); a malformed one is a ``MetadataError``."""
    if isinstance(source, bytes):
        head = source[:_MAX_HEADER_BYTES]
    else:
        with open(source, "rb") as f:
            head = f.read(_MAX_HEADER_BYTES)
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        raise MetadataError("not a PLY file (no ply ... end_header header)" if not head.startswith(b"ply")
                            else "truncated or corrupt PLY header (no end_header)")
    body_at = head.find(b"\n", end) + 1
    try:
        text = head[:end].decode("ascii")
    except UnicodeDecodeError:
        raise MetadataError("corrupt PLY header (not ASCII)") from None
    fmt, count, props, meta, element = "", None, [], None, None
    for line in text.splitlines()[1:]:
        words = line.split()
        if not words:
            continue
        if words[0] == "format" and len(words) >= 2:
            fmt = words[1]
        elif words[0] == "comment" and len(words) >= 2 and words[1] == KEY and meta is None:
            meta = parse_json(line.split(KEY, 1)[1])
        elif words[0] == "element" and len(words) == 3:
            element = words[1]
            if element == "vertex":
                try:
                    count = int(words[2])
                except ValueError:
                    raise MetadataError(f"corrupt PLY header (vertex count {words[2]!r})") from None
        elif words[0] == "property" and element == "vertex" and len(words) >= 3:
            props.append((words[1], words[-1]))
    if not fmt or count is None or count < 0:
        raise MetadataError("corrupt PLY header (no format or vertex element)")
    return PlyHeader(fmt, count, props, meta, body_at)


def read_ply(path: str | Path) -> tuple[np.ndarray, dict | None]:
    """(the vertices, our metadata) of a PLY file written by ``encode_ply``; a file whose size
    does not match its header (truncated) is a ``MetadataError``."""
    data = Path(path).read_bytes()
    header = read_ply_header(data)
    if header.format != "binary_little_endian" or [n for _, n in header.properties] != list(VERTEX.names):
        raise MetadataError("not a depthcli point cloud (other format or vertex properties)")
    body = data[header.data_offset:]
    if len(body) != header.vertex_count * VERTEX.itemsize:
        raise MetadataError(f"truncated or corrupt PLY: {len(body)} bytes of vertex data, "
                            f"the header says {header.vertex_count} x {VERTEX.itemsize}")
    return np.frombuffer(body, VERTEX), header.meta
