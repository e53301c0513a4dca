"""Bad (and oddly shaped) inputs for the end-to-end fuzz suite, built in memory.

Everything here is deterministic for a given seed. Files OpenCV cannot write (CMYK JPEG,
decompression bombs, a video whose frame size changes, broken safetensors headers, a malicious
pickle) are crafted by hand. Each generator returns ``{file name: (bytes, expected reason)}``;
the reason is a substring the CLI's one-line error must contain (``None``: the input must be
processed successfully).
"""
from __future__ import annotations

import io
import json
import pickle
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

TRUNCATED = "truncated or corrupt"
NOT_IMAGE = "not an image"


# --- images ------------------------------------------------------------------------------------


def photo(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth BGR content: compresses like a photo, so cut points land inside real data."""
    rng = np.random.default_rng(seed)
    small = (rng.random((6, 8, 3)) * 255).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def encode(ext: str, image: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(f".{ext}", image, params or [])
    assert ok, ext
    return buf.tobytes()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG chunk structure declaring width x height, with ~30 bytes of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 100)) + png_chunk(b"IEND", b""))


def jpeg_bomb(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 frame header is patched to declare width x height."""
    jpg = bytearray(encode("jpg", photo()))
    sof = jpg.index(b"\xff\xc0")
    struct.pack_into(">HH", jpg, sof + 5, height, width)
    return bytes(jpg)


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload


def cmyk_jpeg(mcus: list[tuple[int, int, int, int]]) -> bytes:
    """A baseline 4-component (Adobe, inverted CMYK) JPEG of flat 8x8 blocks, one per MCU
    (OpenCV reads CMYK JPEGs but cannot write them). Quantisation is all ones, the DC table
    gives each category a 4-bit code and the AC table holds only end-of-block."""
    components = (1, 2, 3, 4)
    sof = struct.pack(">BHHB", 8, 8, 8 * len(mcus), 4) + b"".join(bytes([c, 0x11, 0]) for c in components)
    parts = [
        b"\xff\xd8",
        jpeg_segment(0xEE, b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 0)),
        jpeg_segment(0xDB, b"\x00" + bytes([1] * 64)),
        jpeg_segment(0xC0, sof),
        jpeg_segment(0xC4, b"\x00" + bytes([0, 0, 0, 12] + [0] * 12) + bytes(range(12))),
        jpeg_segment(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00"),
        jpeg_segment(0xDA, bytes([4]) + b"".join(bytes([c, 0]) for c in components) + b"\x00\x3f\x00"),
    ]
    bits, pred = "", [0, 0, 0, 0]
    for mcu in mcus:
        for c, value in enumerate(mcu):
            dc = (value - 128) * 8
            diff, pred[c] = dc - pred[c], dc
            cat = abs(diff).bit_length()
            bits += format(cat, "04b")
            if cat:
                bits += format(diff if diff > 0 else diff + (1 << cat) - 1, f"0{cat}b")
            bits += "0"  # end of block
    bits += "1" * (-len(bits) % 8)
    data = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)).replace(b"\xff", b"\xff\x00")
    return b"".join(parts) + data + b"\xff\xd9"


def cut_points(n: int, rng: np.random.Generator, extra: int) -> list[int]:
    """Fixed cut points every format must survive (just the signature, inside the first
    header, halfway, one byte short) plus ``extra`` random ones."""
    fixed = {1, 8, 20, 33, n // 4, n // 2, (3 * n) // 4, n - 12, n - 2, n - 1}
    fixed |= {int(x) for x in rng.integers(2, n - 1, size=extra)}
    return sorted(p for p in fixed if 0 < p < n)


def bad_images(seed: int, extra_cuts: int = 0) -> dict[str, tuple[bytes, str]]:
    """Files with image extensions that are not readable images. ``-> expected reason``."""
    rng = np.random.default_rng(seed)
    png = encode("png", photo(seed=seed))
    jpg = encode("jpg", photo(seed=seed))
    cases: dict[str, tuple[bytes, str]] = {
        "zero.png": (b"", "empty file"),
        "zero.jpg": (b"", "empty file"),
        "random.png": (rng.bytes(5000), NOT_IMAGE),
        "random.jpg": (rng.bytes(777), NOT_IMAGE),
        "text.jpg": (b"hello, this is not a picture\n" * 20, NOT_IMAGE),
        "utf16.png": ("not an image \u00e9\u4e2d".encode("utf-16"), NOT_IMAGE),
        # a valid signature followed by random bytes
        "sig_random.png": (png[:8] + rng.bytes(2000), TRUNCATED),
        "sig_random.jpg": (b"\xff\xd8\xff" + rng.bytes(2000), TRUNCATED),
        # a valid IHDR chunk, then garbage where IDAT should be
        "ihdr_random.png": (png[:33] + rng.bytes(500), TRUNCATED),
        # header fields damaged in place
        "ihdr_junk.png": (png[:12] + b"JUNK" + png[16:], TRUNCATED),
        "sof_zeroed.jpg": (jpg[:8] + bytes(32) + jpg[40:], TRUNCATED),
        "zero_size.png": (png_with_ihdr(png, 0, 0), TRUNCATED),
    }
    # shorter than the signature (8 bytes PNG, 3 JPEG): no longer recognisable as either
    for cut in cut_points(len(png), rng, extra_cuts):
        cases[f"cut{cut:06d}.png"] = (png[:cut], TRUNCATED if cut >= 8 else NOT_IMAGE)
    for cut in cut_points(len(jpg), rng, extra_cuts):
        cases[f"cut{cut:06d}.jpg"] = (jpg[:cut], TRUNCATED if cut >= 3 else NOT_IMAGE)
    for i in range(extra_cuts):  # random byte flips in a valid file: must never crash
        for name, data in (("png", png), ("jpg", jpg)):
            mutated = bytearray(data)
            for pos in rng.integers(0, len(data), size=int(rng.integers(1, 16))):
                mutated[pos] = int(rng.integers(0, 256))
            cases[f"flip{i:03d}{name}.{name}"] = (bytes(mutated), "")  # may decode: reason unknown
    return cases


def png_with_ihdr(png: bytes, width: int, height: int) -> bytes:
    """``png`` with its IHDR size replaced (and the chunk CRC fixed, so only the size is odd)."""
    ihdr = bytearray(png[16:29])
    struct.pack_into(">II", ihdr, 0, width, height)
    return png[:8] + png_chunk(b"IHDR", bytes(ihdr)) + png[33:]


def bombs() -> dict[str, tuple[bytes, str]]:
    """Declared dimensions far beyond the default pixel limit, with almost no data."""
    return {
        "bomb.png": (png_bomb(100_000, 100_000), "100000x100000 = 10000 MP, over the 178 MP limit"),
        "bomb.jpg": (jpeg_bomb(60_000, 60_000), "60000x60000 = 3600 MP, over the 178 MP limit"),
    }


def odd_images() -> dict[str, tuple[bytes, tuple[int, int]]]:
    """Valid but unusual images -> (bytes, (height, width)) the output must have."""
    rng = np.random.default_rng(7)
    gray16 = rng.integers(0, 65536, (30, 40), dtype=np.uint16)
    color16 = rng.integers(0, 65536, (30, 40, 3), dtype=np.uint16)
    alpha = np.dstack([photo(), np.linspace(0, 255, 48 * 64).reshape(48, 64).astype(np.uint8)])
    return {
        "px1x1.png": (encode("png", photo(1, 1)), (1, 1)),
        "px13x13.png": (encode("png", photo(13, 13)), (13, 13)),
        "px14x14.jpg": (encode("jpg", photo(14, 14)), (14, 14)),
        "wide2000x3.png": (encode("png", photo(3, 2000)), (3, 2000)),
        "tall3x2000.png": (encode("png", photo(2000, 3)), (2000, 3)),
        "gray8.png": (encode("png", photo()[:, :, 0]), (48, 64)),
        "gray16.png": (encode("png", gray16), (30, 40)),
        "color16.png": (encode("png", color16), (30, 40)),
        "color16tif.tif": (encode("tif", color16), (30, 40)),
        "alpha.png": (encode("png", alpha), (48, 64)),
        "cmyk.jpg": (cmyk_jpeg([(255, 255, 255, 255), (0, 255, 255, 255), (255, 255, 255, 0)]), (8, 24)),
        "progressive.jpg": (encode("jpg", photo(), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (48, 64)),
    }


# --- videos ------------------------------------------------------------------------------------


def write_video(path: Path, n: int, size: tuple[int, int] = (64, 48), fps: float = 10.0,
                fourcc: str = "mp4v") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened(), path
    for i in range(n):
        writer.write(photo(size[1], size[0], seed=i))
    writer.release()
    return path


def _mp4_boxes(data: bytes | bytearray, start: int, end: int):
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size < 8:
            return
        yield pos, size, kind
        pos += size


def faststart(mp4: bytes) -> bytes:
    """Move 'moov' in front of 'mdat' (``-movflags faststart``), fixing chunk offsets, so a
    truncated copy still has its index and decodes up to the cut."""
    top = list(_mp4_boxes(mp4, 0, len(mp4)))
    kinds = [kind for _, _, kind in top]
    moov_i, mdat_i = kinds.index(b"moov"), kinds.index(b"mdat")
    pos, size, _ = top[moov_i]
    moov = bytearray(mp4[pos : pos + size])

    def patch(start: int, end: int) -> None:
        for bp, bs, kind in _mp4_boxes(moov, start, end):
            if kind in (b"trak", b"mdia", b"minf", b"stbl"):
                patch(bp + 8, bp + bs)
            elif kind in (b"stco", b"co64"):
                width, fmt = (4, ">I") if kind == b"stco" else (8, ">Q")
                (count,) = struct.unpack(">I", moov[bp + 12 : bp + 16])
                for j in range(count):
                    at = bp + 16 + width * j
                    struct.pack_into(fmt, moov, at, struct.unpack(fmt, moov[at : at + width])[0] + len(moov))

    patch(8, len(moov))
    out = b""
    for i, (bp, bs, _) in enumerate(top):
        if i == mdat_i:
            out += bytes(moov)
        if i != moov_i:
            out += mp4[bp : bp + bs]
    return out


def mjpeg_stream(sizes: list[tuple[int, int]]) -> bytes:
    """Raw concatenated JPEG frames (an ``.mjpeg`` elementary stream) of the given (w, h)."""
    return b"".join(encode("jpg", photo(h, w, seed=i)) for i, (w, h) in enumerate(sizes))


def _avi_chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _avi_list(kind: bytes, body: bytes) -> bytes:
    return b"LIST" + struct.pack("<I", len(body) + 4) + kind + body


def mjpeg_avi(frames: list[bytes], size: tuple[int, int], fps: int = 10) -> bytes:
    """A minimal MJPG AVI (RIFF, idx1 index) around the given JPEG frames; the header
    declares ``size``, the frames may have any size."""
    w, h = size
    n = len(frames)
    avih = struct.pack("<IIIIIIIIII4I", 1_000_000 // fps, 0, 0, 0x10, n, 0, 1, 0, w, h, 0, 0, 0, 0)
    strh = struct.pack("<4s4sIHHIIIIIIIIhhhh", b"vids", b"MJPG", 0, 0, 0, 0, 1, fps, 0, n, 0,
                       0xFFFFFFFF, 0, 0, 0, w, h)
    strf = struct.pack("<IiiHH4sIiiII", 40, w, h, 1, 24, b"MJPG", w * h * 3, 0, 0, 0, 0)
    hdrl = _avi_list(b"hdrl", _avi_chunk(b"avih", avih)
                     + _avi_list(b"strl", _avi_chunk(b"strh", strh) + _avi_chunk(b"strf", strf)))
    movi_body, index, offset = b"", b"", 4
    for f in frames:
        chunk = _avi_chunk(b"00dc", f)
        index += struct.pack("<4sIII", b"00dc", 0x10, offset, len(f))
        movi_body += chunk
        offset += len(chunk)
    body = b"AVI " + hdrl + _avi_list(b"movi", movi_body) + _avi_chunk(b"idx1", index)
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --- checkpoints -------------------------------------------------------------------------------


class MaliciousPayload:
    """Unpickling this calls ``pathlib.Path.touch(marker)``: a harmless stand-in for code
    execution that leaves evidence if a loader ever runs it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


def malicious_pickles(marker: Path) -> dict[str, bytes]:
    """A torch zip checkpoint and a bare legacy pickle, both executing code when unpickled
    without ``weights_only`` (proved by the marker file appearing)."""
    import torch

    buf = io.BytesIO()
    torch.save({"pretrained.cls_token": torch.zeros(1), "evil": MaliciousPayload(marker)}, buf)
    legacy = pickle.dumps({"state_dict": MaliciousPayload(marker)}, protocol=2)
    return {"evil_zip.pth": buf.getvalue(), "evil_legacy.pth": legacy}


def safetensors_bytes(header: dict | bytes, data: bytes, length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def bad_safetensors(good: bytes) -> dict[str, bytes]:
    """Broken headers built from (and next to) a valid file."""
    (n,) = struct.unpack("<Q", good[:8])
    header = json.loads(good[8 : 8 + n])
    first = next(k for k in header if k != "__metadata__")
    beyond = json.loads(json.dumps(header))
    beyond[first]["data_offsets"] = [0, 10**12]
    overlap = json.loads(json.dumps(header))
    overlap[first]["data_offsets"] = [0, 4]
    wrong_dtype = json.loads(json.dumps(header))
    wrong_dtype[first]["dtype"] = "Q99"
    return {
        "len_huge.safetensors": struct.pack("<Q", 2**62) + good[8:],
        "len_short.safetensors": struct.pack("<Q", n // 2) + good[8:],
        "len_beyond_file.safetensors": struct.pack("<Q", len(good) * 4) + good[8:],
        "bad_json.safetensors": safetensors_bytes(b"{not json" + b" " * 16, b"\0" * 64),
        "json_not_object.safetensors": safetensors_bytes(b"[1, 2, 3]", b""),
        "offsets_beyond.safetensors": safetensors_bytes(beyond, good[8 + n :]),
        "offsets_wrong_size.safetensors": safetensors_bytes(overlap, good[8 + n :]),
        "bad_dtype.safetensors": safetensors_bytes(wrong_dtype, good[8 + n :]),
        "header_only.safetensors": good[: 8 + n],
        "tiny.safetensors": good[:5],
    }


# --- checkpoint archives -----------------------------------------------------------------------
# A torch.save checkpoint is a zip archive; these mutate the archive itself (re-packed entries,
# sizes, compression methods, names, offsets) rather than the bytes of the tensors.

LOADS = None  # expected reason: must load, to exactly the tensors torch.load(weights_only=True) gives
EITHER = "?"  # may load (then to torch.load's tensors) or fail in one line


def rezip(archive: bytes, method_for=lambda name: 0, data_for=lambda name, data: data,  # noqa: ANN001
          order=None, extra: tuple[tuple[str, bytes], ...] = ()) -> bytes:  # noqa: ANN001
    """The archive re-packed by Python's zipfile (what ordinary zip tools do: no 64-byte
    alignment), each entry compressed with ``method_for(name)``, its data ``data_for(name, data)``
    (``None`` drops the entry), in ``order(names)``, then ``extra`` (name, data) entries appended."""
    import warnings
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as src, zipfile.ZipFile(out, "w") as dst, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": on purpose in some cases
        infos = src.infolist()
        names = order([i.filename for i in infos]) if order else [i.filename for i in infos]
        for name in names:
            data = data_for(name, src.read(name) if name in src.NameToInfo else b"")
            if data is not None:
                dst.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), data, compress_type=method_for(name))
        for name, data in extra:
            dst.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), data, compress_type=zipfile.ZIP_STORED)
    return out.getvalue()


def central_records(archive: bytes) -> dict[str, int]:
    """name -> position of its central-directory record (archives without zip64 only)."""
    end = archive.rfind(b"PK\x05\x06")
    size, offset = struct.unpack_from("<II", archive, end + 12)
    assert offset != 0xFFFFFFFF, "zip64 archive"
    records, pos = {}, offset
    while pos < offset + size:
        assert archive[pos : pos + 4] == b"PK\x01\x02"
        n, m, k = struct.unpack_from("<HHH", archive, pos + 28)
        records.setdefault(archive[pos + 46 : pos + 46 + n].decode(), pos)
        pos += 46 + n + m + k
    return records


_CENTRAL_FIELDS = {"flags": (8, "<H"), "method": (10, "<H"), "crc": (16, "<I"), "csize": (20, "<I"),
                   "usize": (24, "<I"), "offset": (42, "<I")}


def patch_central(archive: bytes, name: str, **fields: int) -> bytes:
    """The archive with fields of ``name``'s central-directory record replaced."""
    out = bytearray(archive)
    pos = central_records(archive)[name]
    for field_name, value in fields.items():
        at, fmt = _CENTRAL_FIELDS[field_name]
        struct.pack_into(fmt, out, pos + at, value % (1 << (8 * struct.calcsize(fmt))))
    return bytes(out)


def central_field(archive: bytes, name: str, field_name: str) -> int:
    at, fmt = _CENTRAL_FIELDS[field_name]
    return struct.unpack_from(fmt, archive, central_records(archive)[name] + at)[0]


def data_start(archive: bytes, name: str) -> int:
    """Where ``name``'s data starts (after its local header)."""
    header = central_field(archive, name, "offset")
    n, m = struct.unpack_from("<HH", archive, header + 26)
    return header + 30 + n + m


def rename_entry(archive: bytes, name: str, new_name: str) -> bytes:
    """``name`` renamed (same length) in its central record and its local header."""
    assert len(new_name) == len(name)
    out = bytearray(archive)
    pos = central_records(archive)[name]
    header = central_field(archive, name, "offset")
    out[pos + 46 : pos + 46 + len(name)] = new_name.encode()
    out[header + 30 : header + 30 + len(name)] = new_name.encode()
    return bytes(out)


def flip_byte(archive: bytes, at: int) -> bytes:
    out = bytearray(archive)
    out[at] ^= 0x5A
    return bytes(out)


def archive_mutations(pth: bytes, seed: int, extra: int = 0) -> dict[str, tuple[bytes, str | None]]:
    """Archive-level mutations of a torch.save checkpoint ``pth`` -> (bytes, expected reason):
    :data:`LOADS`, :data:`EITHER`, or a substring of the one-line error."""
    import zipfile

    stored, deflated = zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(io.BytesIO(pth)) as zf:
        infos = zf.infolist()
    prefix = infos[0].filename.split("/", 1)[0]
    data_entries = sorted((i for i in infos if i.filename.startswith(f"{prefix}/data/")),
                          key=lambda i: -i.file_size)
    big, small = data_entries[0].filename, data_entries[-1].filename  # a weight matrix, a bias
    twin = next(i.filename for i in data_entries[1:] if len(i.filename) == len(big))  # renamed to big
    pkl = f"{prefix}/data.pkl"
    every_other = {i.filename for i in infos[::2]}
    deflate_all = rezip(pth, lambda n: deflated)
    cases: dict[str, tuple[bytes, str | None]] = {
        # what ordinary tools produce: valid, and torch.load reads them to the same tensors
        "deflate_all": (deflate_all, LOADS),
        "deflate_some": (rezip(pth, lambda n: deflated if n in every_other else stored), LOADS),
        "deflate_pickle_only": (rezip(pth, lambda n: deflated if n == pkl else stored), LOADS),
        "stored_unaligned": (rezip(pth), LOADS),
        # a wrong CRC on a stored entry: neither torch nor depthcli reads stored CRCs
        "crc_wrong_stored": (patch_central(pth, big, crc=central_field(pth, big, "crc") ^ 1), LOADS),
        # a changed weight: torch.load gives the changed tensor, so must depthcli
        "data_flip_stored": (flip_byte(pth, data_start(pth, big) + 5), LOADS),
        # damaged compressed data: torch.load decompresses it to garbage without complaint
        "data_flip_deflated": (flip_byte(deflate_all, data_start(deflate_all, big) + 40), "compressed entry"),
        "pickle_flip_deflated": (flip_byte(deflate_all, data_start(deflate_all, pkl) + 20), "cannot be read"),
        # sizes
        "size_stored_disagree": (patch_central(pth, big, usize=central_field(pth, big, "usize") + 4),
                                 "size mismatch"),
        "size_both_smaller": (patch_central(pth, big, usize=central_field(pth, big, "usize") - 4,
                                            csize=central_field(pth, big, "csize") - 4), "size mismatch"),
        "size_beyond_file": (patch_central(pth, big, usize=len(pth) * 2, csize=len(pth) * 2), "truncated archive"),
        "size_deflated_usize": (patch_central(deflate_all, small, usize=central_field(deflate_all, small, "usize") + 8),
                                "size mismatch"),
        "entry_short": (rezip(pth, data_for=lambda n, d: d[:-4] if n == big else d), "size mismatch"),
        "entry_padded": (rezip(pth, data_for=lambda n, d: d + bytes(64) if n == big else d), "size mismatch"),
        "entry_missing": (rezip(pth, data_for=lambda n, d: None if n == small else d), "has no entry"),
        "cut_central_directory": (pth[:-10], "truncated archive"),
        # compression methods
        "method_bzip2": (patch_central(pth, big, method=12), "compressed with bzip2; PyTorch reads only"),
        "method_lzma": (patch_central(deflate_all, small, method=14), "compressed with LZMA"),
        "method_unknown": (patch_central(pth, pkl, method=99), "method 99"),
        "method_deflate_on_stored": (patch_central(pth, big, method=8), "compressed entry"),
        "method_stored_on_deflated": (patch_central(deflate_all, big, method=0), "size mismatch"),
        "encrypted": (patch_central(pth, small, flags=central_field(pth, small, "flags") | 1), "encrypted"),
        # names and places
        "duplicate_renamed": (rename_entry(pth, twin, big), "appears twice"),
        "duplicate_appended": (rezip(pth, extra=((big, bytes(data_entries[0].file_size)),)), "appears twice"),
        "offset_shifted": (patch_central(pth, small, offset=central_field(pth, small, "offset") + 1),
                           "no local header"),
        "local_name_changed": (flip_byte(pth, central_field(pth, small, "offset") + 30 + len(small) - 1),
                               "damaged archive"),
        "foreign_first_entry": (rezip(pth, order=lambda names: ["zzz/readme.txt", *names],
                                      data_for=lambda n, d: d or b"hello"), "no zzz/data.pkl"),
    }
    rng = np.random.default_rng(seed)
    for i in range(extra):  # random central-directory edits: loads exactly what torch loads, or one line
        base = (pth, deflate_all)[i % 2]
        name = str(rng.choice([i.filename for i in infos]))
        field_name = str(rng.choice(list(_CENTRAL_FIELDS)))
        value = {"method": int(rng.choice([0, 8, 9, 12, 14, 99])), "flags": int(rng.integers(0, 1 << 16)),
                 "crc": int(rng.integers(0, 1 << 32))}.get(
            field_name, central_field(base, name, field_name) + int(rng.integers(-70, 70)))
        cases[f"random{i:03d}_{field_name}"] = (patch_central(base, name, **{field_name: value}), EITHER)
    return cases
