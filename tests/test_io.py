"""The OpenCV I/O layer: images, inputs, atomic writers, rendering, video, camera, window.

Everything is generated with OpenCV in tmp_path; files OpenCV cannot write (CMYK JPEG, EXIF,
decompression bombs, fast-start MP4) are crafted by hand with the helpers below.
"""
from __future__ import annotations

import errno
import io
import os
import struct
import subprocess
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from fuzz_cases import cmyk_jpeg, faststart, jpeg_segment, png_bomb

from depthcli.io import images, inputs, render, window, writers
from depthcli.io.images import IMAGE_EXTENSIONS, ImageReadError, read_image
from depthcli.io.inputs import collect_inputs
from depthcli.io.video import opencv as video
from depthcli.io.video.camera import open_source
from depthcli.io.video.opencv import FrameDirWriter, VideoOpenError, VideoReader, VideoWriter
from depthcli.io.writers import OutputError, atomic_path, encode_png, write_npy, write_png

# --- helpers ----------------------------------------------------------------------------------


def _photo(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth, asymmetric BGR content (JPEG-friendly; rotations are distinguishable)."""
    rng = np.random.default_rng(seed)
    small = (rng.random((6, 8, 3)) * 255).astype(np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    img[:4, :4] = (0, 0, 255)  # red top-left corner marker
    return img


def _jpeg(img: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", img)[1].tobytes()


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert a minimal big-endian EXIF APP1 (one IFD0 entry: Orientation) after SOI."""
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + b"\0\0\0\0"
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    return jpeg[:2] + jpeg_segment(0xE1, b"Exif\0\0" + tiff) + jpeg[2:]


def _write_video(
    path: Path, n: int, size: tuple[int, int] = (64, 48), fps: float = 24.0, fourcc: str = "mp4v"
) -> None:
    with VideoWriter(path, fps, size, fourcc=fourcc) as writer:
        for i in range(n):
            writer.write(_photo(size[1], size[0], seed=i))


def _temp_leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob(".*.tmp*"))


def _count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _readonly_dir(tmp_path: Path) -> Path:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root ignores permission bits
        ro.chmod(0o755)
        pytest.skip("permission bits are not enforced for this user (root)")
    return ro


@pytest.fixture
def restore_mode(tmp_path: Path):
    yield
    for p in tmp_path.rglob("*"):
        if p.is_dir():
            p.chmod(0o755)


# --- images: parity with cv2.imread -----------------------------------------------------------

EIGHT_BIT_FORMATS = ["png", "jpg", "bmp", "tif", "webp", "ppm", "pgm", "gif", "jp2", "ras", "pfm", "hdr"]


@pytest.mark.parametrize("ext", [e for e in EIGHT_BIT_FORMATS if e in IMAGE_EXTENSIONS])
def test_read_image_bit_identical_to_imread(tmp_path: Path, ext: str) -> None:
    img = _photo()
    if ext == "pgm":
        img = img[:, :, 1]
    if ext in ("pfm", "hdr"):
        img = img.astype(np.float32) / 255.0
    path = tmp_path / f"a.{ext}"
    assert cv2.imwrite(str(path), img)
    expected = cv2.imread(str(path))
    for source in (path, str(path), path.read_bytes()):
        out = read_image(source)
        assert out.dtype == np.uint8 and out.shape == expected.shape
        assert np.array_equal(out, expected)


def test_read_image_gray_and_alpha_like_imread(tmp_path: Path) -> None:
    gray, bgra = tmp_path / "g.png", tmp_path / "a.png"
    cv2.imwrite(str(gray), _photo()[:, :, 0])
    alpha = np.dstack([_photo(), np.linspace(0, 255, 48 * 64).reshape(48, 64).astype(np.uint8)])
    cv2.imwrite(str(bgra), alpha)
    for path in (gray, bgra):
        out = read_image(path)
        assert out.shape == (48, 64, 3)
        assert np.array_equal(out, cv2.imread(str(path)))
    assert np.array_equal(read_image(bgra), alpha[:, :, :3])  # alpha dropped, not composited


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_read_image_keeps_16_bit(tmp_path: Path, ext: str) -> None:
    rng = np.random.default_rng(1)
    color = rng.integers(0, 65536, (30, 40, 3), dtype=np.uint16)
    gray = rng.integers(0, 65536, (30, 40), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / f"c.{ext}"), color)
    cv2.imwrite(str(tmp_path / f"g.{ext}"), gray)
    out = read_image(tmp_path / f"c.{ext}")
    assert out.dtype == np.uint16 and np.array_equal(out, color)
    out = read_image((tmp_path / f"g.{ext}").read_bytes())
    assert out.dtype == np.uint16 and out.shape == (30, 40, 3)
    assert all(np.array_equal(out[:, :, c], gray) for c in range(3))
    assert cv2.imread(str(tmp_path / f"c.{ext}")).dtype == np.uint8  # what we avoid


def test_read_imagecmyk_jpeg() -> None:
    data = cmyk_jpeg([(255, 255, 255, 255), (0, 255, 255, 255), (255, 255, 255, 0)])
    out = read_image(data)
    assert out.shape == (8, 24, 3) and out.dtype == np.uint8
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(out, expected)
    white, cyan, black = out[4, 4], out[4, 12], out[4, 20]
    assert white.min() >= 250 and black.max() <= 5
    assert cyan[0] >= 250 and cyan[1] >= 250 and cyan[2] <= 5  # BGR: no red


@pytest.mark.parametrize(
    "orientation,rotate",
    [(1, None), (3, cv2.ROTATE_180), (6, cv2.ROTATE_90_CLOCKWISE), (8, cv2.ROTATE_90_COUNTERCLOCKWISE)],
)
def test_read_image_applies_exif_orientation(tmp_path: Path, orientation: int, rotate: int | None) -> None:
    plain = _jpeg(_photo())
    upright = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR)
    data = _with_exif_orientation(plain, orientation)
    path = tmp_path / "exif.jpg"
    path.write_bytes(data)
    expected = upright if rotate is None else cv2.rotate(upright, rotate)
    assert np.array_equal(cv2.imread(str(path)), expected)  # OpenCV's own behaviour
    assert np.array_equal(read_image(path), expected)
    assert np.array_equal(read_image(data), expected)  # bytes (stdin) too


def test_read_image_exif_orientation_for_16_bit_not_needed_but_harmless(tmp_path: Path) -> None:
    # 16-bit decoding uses IMREAD_ANYDEPTH, which must not switch orientation handling off.
    data = _with_exif_orientation(_jpeg(_photo()), 6)
    assert read_image(data).shape == (64, 48, 3)


# --- images: errors -----------------------------------------------------------------------------


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    png = cv2.imencode(".png", _photo())[1].tobytes()
    jpg = _jpeg(_photo())
    files = {
        "empty.jpg": (b"", "empty file"),
        "half.png": (png[: len(png) // 2], "truncated or corrupt"),
        "half.jpg": (jpg[: len(jpg) // 2], "truncated or corrupt"),
        "noeoi.jpg": (jpg[:-2], "truncated or corrupt"),
        "header.png": (png[:12] + b"JUNK" + png[16:], "truncated or corrupt"),
        "header.jpg": (jpg[:8] + bytes(32) + jpg[40:], "truncated or corrupt"),
        "random.png": (np.random.default_rng(0).bytes(5000), "not an image"),
        "text.jpg": (b"hello, this is not a picture\n" * 20, "not an image"),
        "short.bmp": (b"BM", "not an image"),
    }
    out = {}
    for name, (data, reason) in files.items():
        (tmp_path / name).write_bytes(data)
        out[name] = (tmp_path / name, reason)
    return out


def test_read_image_bad_files_raise_one_line_errors_and_stay_quiet(tmp_path: Path, capfd) -> None:
    for name, (path, reason) in _bad_inputs(tmp_path).items():
        for source in (path, path.read_bytes()):
            if source == b"":
                reason = "empty input"
            with pytest.raises(ImageReadError) as info:
                read_image(source)
            message = str(info.value)
            assert reason in message, (name, message)
            assert "\n" not in message
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""  # no OpenCV / libpng / libjpeg chatter


def test_read_image_path_problems(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)


def test_read_image_libpng_error_is_silenced(capfd) -> None:
    # A complete chunk structure with too little pixel data: libpng reports it with fprintf.
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        read_image(png_bomb(300, 200), max_pixels=None)
    assert capfd.readouterr().err == ""


def test_native_stderr_filter_keeps_other_output(capfd) -> None:
    with images._native_stderr_filtered():
        os.write(2, b"libpng warning: iCCP: known incorrect sRGB profile\nsomething else\n")
    assert capfd.readouterr().err == "something else\n"


def test_decompression_bomb_png_refused_before_decoding() -> None:
    data = png_bomb(100_000, 100_000)
    start = time.perf_counter()
    with pytest.raises(ImageReadError) as info:
        read_image(data)
    assert time.perf_counter() - start < 0.5
    assert str(info.value) == (
        "image is 100000x100000 = 10000 MP, over the 178 MP limit (--max-pixels to raise it)"
    )


def test_pixel_limit_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), _photo())  # 64x48 = 3072 pixels
    with pytest.raises(ImageReadError, match="64x48 = 3072 pixels, over the 3000 pixels limit"):
        read_image(path, max_pixels=3000)
    assert read_image(path, max_pixels=3072).shape == (48, 64, 3)
    assert read_image(path, max_pixels=None).shape == (48, 64, 3)


def test_opencv_own_pixel_limit_becomes_image_read_error() -> None:
    # With our guard off, OpenCV's (2^30 pixels by default) still refuses, by raising cv2.error.
    with pytest.raises(ImageReadError, match="100000x100000 is over OpenCV's size limit"):
        read_image(png_bomb(100_000, 100_000), max_pixels=None)


def test_decompression_bomb_jpeg_sof_refused() -> None:
    jpg = bytearray(_with_exif_orientation(_jpeg(_photo()), 1))
    sof = jpg.index(b"\xff\xc0")
    struct.pack_into(">HH", jpg, sof + 5, 60000, 60000)  # height, width
    with pytest.raises(ImageReadError, match="60000x60000 = 3600 MP"):
        read_image(bytes(jpg))


@pytest.mark.parametrize(
    "ext",
    ["png", "jpg", "bmp", "gif", "webp", "tif", "ppm", "pgm", "pam", "pfm", "ras", "jp2", "hdr", "avif"],
)
def test_header_dimensions_match_decoded_size(tmp_path: Path, ext: str) -> None:
    if ext not in IMAGE_EXTENSIONS:
        pytest.skip(f"no {ext} codec in this OpenCV build")
    img = _photo(37, 53)
    if ext in ("pfm", "hdr"):
        img = img.astype(np.float32) / 255
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == "webp" else []  # 101: lossless (VP8L)
    path = tmp_path / f"a.{ext}"
    assert cv2.imwrite(str(path), img if ext != "pgm" else img[:, :, 0], params)
    with open(path, "rb") as f:
        fmt, dims = images._sniff(f)
    assert fmt is not None and dims == (53, 37), (fmt, dims)


def test_header_dimensions_lossy_webp_and_bigtiff_free_parsers() -> None:
    lossy = cv2.imencode(".webp", _photo(37, 53), [cv2.IMWRITE_WEBP_QUALITY, 80])[1].tobytes()
    assert images._sniff(io.BytesIO(lossy)) == ("webp", (53, 37))
    assert images._sniff(io.BytesIO(b"not an image at all")) == (None, None)
    assert images._sniff(io.BytesIO(b"\x89PNG\r\n\x1a\n")) == ("png", None)  # cut header


def test_image_extensions() -> None:
    assert {"jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp", "pgm", "ppm"} <= IMAGE_EXTENSIONS
    assert all(ext == ext.lower() and not ext.startswith(".") for ext in IMAGE_EXTENSIONS)
    assert ("exr" in IMAGE_EXTENSIONS) == cv2.haveImageWriter("x.exr")


def test_io_layer_does_not_import_torch() -> None:
    code = (
        "import sys, depthcli.io.images, depthcli.io.inputs, depthcli.io.writers, depthcli.io.render,"
        " depthcli.io.video.opencv, depthcli.io.video.camera, depthcli.io.window; print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# --- inputs -----------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """photos/{b.jpg,a.png,notes.txt,.hidden.jpg,sub/c.JPG,sub/deeper/d.png,.git/e.png}"""
    root = tmp_path / "photos"
    for rel in ["b.jpg", "a.png", "notes.txt", ".hidden.jpg", "sub/c.JPG", "sub/deeper/d.png", ".git/e.png"]:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    return root


def _collect(specs: list[str], recursive: bool = False, list_file: str | None = None, stdin: bytes = b""):
    return collect_inputs(specs, recursive=recursive, list_file=list_file, stdin=io.BytesIO(stdin))[:2]


def test_inputs_directory_non_recursive(tree: Path) -> None:
    items, problems = _collect(["photos"])
    assert problems == []
    assert [i.relative.as_posix() for i in items] == ["a.png", "b.jpg"]
    assert items[0].source == Path("photos/a.png") and items[0].data is None


def test_inputs_directory_recursive_keeps_subfolders(tree: Path) -> None:
    items, problems = _collect(["photos"], recursive=True)
    assert problems == []
    assert [i.relative.as_posix() for i in items] == ["a.png", "b.jpg", "sub/c.JPG", "sub/deeper/d.png"]
    assert all(i.source is not None and i.source.is_file() for i in items)


def test_inputs_explicit_files_any_extension_and_missing(tree: Path) -> None:
    items, problems = _collect(["photos/notes.txt", "nope.jpg", "photos/b.jpg"])
    assert [(i.label, i.relative.as_posix()) for i in items] == [
        ("photos/notes.txt", "notes.txt"),
        ("photos/b.jpg", "b.jpg"),
    ]
    assert problems == ["nope.jpg: no such file"]


def test_inputs_deduplicated(tree: Path) -> None:
    (tree / "link.jpg").symlink_to(tree / "b.jpg")
    items, _ = _collect(["photos/b.jpg", "photos", "./photos/b.jpg", "photos/link.jpg"])
    assert [i.relative.as_posix() for i in items] == ["b.jpg", "a.png"]


def test_inputs_symlink_loops_terminate(tree: Path) -> None:
    (tree / "sub" / "loop").symlink_to(tree, target_is_directory=True)
    (tree / "broken.png").symlink_to(tree / "gone.png")
    items, problems = _collect(["photos"], recursive=True)
    rels = [i.relative.as_posix() for i in items]
    assert rels == ["a.png", "b.jpg", "sub/c.JPG", "sub/deeper/d.png"]
    assert problems == []
    assert _collect(["photos/broken.png"])[1] == ["photos/broken.png: broken symbolic link"]


def test_inputs_globs(tree: Path) -> None:
    items, problems = _collect(["photos/*.jpg", "photos/**/*.png", "photos/*.gif"])
    assert [i.relative.as_posix() for i in items] == ["b.jpg", "a.png", "sub/deeper/d.png"]
    assert problems == ["photos/*.gif: no files match"]
    items, _ = _collect(["photos/*"])  # images only (notes.txt skipped), subdir scanned
    assert [i.relative.as_posix() for i in items] == ["a.png", "b.jpg", "sub/c.JPG"]
    items, _ = _collect(["photos/*.txt"])  # an explicit extension is the user's choice
    assert [i.relative.as_posix() for i in items] == ["notes.txt"]


def test_inputs_list_file(tree: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("# my images\n\nphotos/b.jpg\n  photos/sub/c.JPG  \n#photos/a.png\nmissing.png\n")
    items, problems = _collect([], list_file=str(listing))
    assert [i.label for i in items] == ["photos/b.jpg", "photos/sub/c.JPG"]
    assert problems == ["missing.png: no such file"]
    items, problems = _collect(["photos/a.png"], list_file="-", stdin=b"photos/b.jpg\r\n")
    assert [i.label for i in items] == ["photos/a.png", "photos/b.jpg"] and problems == []
    items, _ = _collect([], list_file="-", stdin=b"photos/b.jpg\0photos/a.png\0")  # find -print0
    assert [i.label for i in items] == ["photos/b.jpg", "photos/a.png"]
    assert _collect([], list_file="nolist.txt")[1] == ["nolist.txt: no such file (list file)"]


def test_inputs_stdin(tree: Path) -> None:
    items, problems = _collect(["-", "photos/b.jpg", "-"], stdin=b"\x89PNG...")
    assert problems == []
    assert items[0].source is None and items[0].label == "<stdin>" and items[0].data == b"\x89PNG..."
    assert [i.label for i in items] == ["<stdin>", "photos/b.jpg"]
    assert _collect(["-"], stdin=b"")[1] == ["<stdin>: no data on standard input"]
    items, problems = _collect(["-"], list_file="-", stdin=b"photos/b.jpg\n")
    assert items == [] and problems == ["-: stdin cannot be both the list file and an image"]


# --- atomic writers ---------------------------------------------------------------------------


def test_atomic_path_success_and_temp_name(tmp_path: Path) -> None:
    final = tmp_path / "out" / "photo_depth.png"
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(".photo_depth.")
        assert tmp.name.endswith(".tmp.png")
        assert cv2.imwrite(str(tmp), _photo())  # extension-driven encoders work on it
        assert not final.exists()
    assert final.is_file() and _temp_leftovers(tmp_path) == []


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_atomic_path_failure_leaves_old_file_and_no_temp(tmp_path: Path, exc_type: type) -> None:
    final = tmp_path / "d.png"
    final.write_bytes(b"old")
    with pytest.raises(exc_type), atomic_path(final) as tmp:
        tmp.write_bytes(b"partial")
        raise exc_type()
    assert final.read_bytes() == b"old" and _temp_leftovers(tmp_path) == []


def test_atomic_path_nothing_written(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="nothing was written"), atomic_path(tmp_path / "x.png"):
        pass


@pytest.mark.parametrize(
    "array",
    [
        _photo(),
        _photo()[:, :, 0],
        np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 21,
    ],
    ids=["bgr8", "gray8", "gray16"],
)
def test_write_png_round_trip(tmp_path: Path, array: np.ndarray) -> None:
    path = tmp_path / "new" / "dir" / "d.png"
    write_png(path, array)
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert back.dtype == array.dtype and np.array_equal(back, array)
    assert encode_png(array) == path.read_bytes()
    assert _temp_leftovers(tmp_path) == []


def test_encode_png_rejects_bad_arrays() -> None:
    with pytest.raises(ValueError, match="uint8 or uint16"):
        encode_png(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="shape"):
        encode_png(np.zeros((4, 4, 2), np.uint8))


def test_write_npy_round_trip(tmp_path: Path) -> None:
    depth = np.random.default_rng(0).random((30, 40), dtype=np.float32)
    write_npy(tmp_path / "d.npy", depth)
    back = np.load(tmp_path / "d.npy")
    assert back.dtype == np.float32 and np.array_equal(back, depth)
    assert _temp_leftovers(tmp_path) == []


def test_write_when_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError) as info:
        write_png(tmp_path / "afile" / "d.png", _photo())
    assert "\n" not in str(info.value) and "afile" in str(info.value)


def test_write_into_read_only_directory(tmp_path: Path, restore_mode: None) -> None:
    ro = _readonly_dir(tmp_path)
    with pytest.raises(OutputError, match="Permission denied"):
        write_png(ro / "d.png", _photo())
    assert list(ro.iterdir()) == []


def test_write_permission_error_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same path as a read-only directory, testable as root too.
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), args[0])

    monkeypatch.setattr(writers.os, "open", refuse)
    with pytest.raises(OutputError) as info:
        write_png(tmp_path / "d.png", _photo())
    monkeypatch.undo()
    assert str(info.value) == f"cannot write {tmp_path / 'd.png'}: Permission denied (EACCES)"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("writer", ["png", "npy"])
def test_full_disk_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str) -> None:
    final = tmp_path / f"d.{writer}"
    calls = []
    real_write = os.write

    def write_then_fail(fd: int, data) -> int:
        calls.append(len(data))
        if len(calls) == 1:  # first chunk goes through, so a partial temp file exists
            return real_write(fd, bytes(data[:100]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writers.os, "write", write_then_fail)
    with pytest.raises(OutputError) as info:
        if writer == "png":
            write_png(final, _photo(200, 200))
        else:
            write_npy(final, np.zeros((200, 200), np.float32))
    monkeypatch.undo()
    assert str(info.value) == f"cannot write {final}: No space left on device (ENOSPC)"
    assert len(calls) == 2
    assert not final.exists() and _temp_leftovers(tmp_path) == []


def test_write_stdout_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    class Out:
        def __init__(self, buffer) -> None:
            self.buffer = buffer

        def fileno(self) -> int:
            raise io.UnsupportedOperation("fileno")

    monkeypatch.setattr(sys, "stdout", Out(io.BytesIO()))
    assert writers.write_stdout_bytes(b"png") is True
    assert sys.stdout.buffer.getvalue() == b"png"

    class ClosedPipe(io.BytesIO):
        def write(self, data) -> int:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Out(ClosedPipe()))
    assert writers.write_stdout_bytes(b"png") is False


# --- render -----------------------------------------------------------------------------------


def _depth(seed: int = 0, shape: tuple[int, int] = (37, 53)) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape, dtype=np.float32) * 7.3 + 0.4).astype(np.float32)


def test_gray8_matches_original_scripts() -> None:
    depth = _depth()
    original = ((depth - depth.min()) / (depth.max() - depth.min()) * 255.0).astype(np.uint8)
    assert np.array_equal(render.to_gray8(depth), original)
    assert np.array_equal(render.to_color(depth), cv2.applyColorMap(original, cv2.COLORMAP_INFERNO))


def test_normalize_ranges_and_invert() -> None:
    depth = np.array([[0.0, 5.0, 10.0, 20.0]], np.float32)
    assert np.allclose(render.normalize(depth), [[0, 0.25, 0.5, 1.0]])
    assert np.allclose(render.normalize(depth, (5.0, 15.0)), [[0, 0, 0.5, 1.0]])
    assert render.to_gray8(depth).tolist() == [[0, 63, 127, 255]]
    assert render.to_gray8(depth, invert=True).tolist() == [[255, 192, 128, 0]]
    gray16 = render.to_gray16(depth)
    assert gray16.dtype == np.uint16 and gray16.tolist() == [[0, 16384, 32768, 65535]]
    assert render.to_gray16(depth, invert=True).tolist() == [[65535, 49151, 32767, 0]]


def test_normalize_constant_nan_inf_are_safe() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero / invalid-value warnings either
        assert not render.normalize(np.full((4, 5), 3.0, np.float32)).any()
        assert not render.normalize(np.full((4, 5), np.nan, np.float32)).any()
        assert not render.normalize(np.ones((4, 5), np.float32), (2.0, 2.0)).any()
        depth = np.array([[np.nan, 1.0, 3.0, np.inf, -np.inf]], np.float32)
        out = render.normalize(depth)
        assert out.tolist() == [[0.0, 0.0, 1.0, 1.0, 0.0]]
        assert render.to_gray8(depth).dtype == np.uint8
        assert render.to_color(np.full((4, 5), np.nan, np.float32)).shape == (4, 5, 3)
    with pytest.raises(ValueError):
        render.normalize(depth, (0.0, np.inf))


def test_all_colormaps() -> None:
    assert {"inferno", "turbo", "magma", "viridis", "plasma", "jet"} <= set(render.COLORMAPS)
    depth = _depth()
    gray = render.to_gray8(depth)
    for name, code in render.COLORMAPS.items():
        out = render.to_color(depth, colormap=name)
        assert out.shape == (37, 53, 3) and out.dtype == np.uint8
        assert np.array_equal(out, cv2.applyColorMap(gray, code)), name
    assert np.array_equal(render.to_color(depth, "TURBO"), render.to_color(depth, cv2.COLORMAP_TURBO))
    with pytest.raises(ValueError, match="unknown colormap 'spectrall'"):
        render.to_color(depth, "spectrall")


def test_side_by_side() -> None:
    image = _photo(48, 64)
    depth_bgr = render.to_color(_depth(shape=(48, 64)))
    out = render.side_by_side(image, depth_bgr)
    assert out.shape == (48, 128, 3) and out.dtype == np.uint8
    assert np.array_equal(out[:, :64], image) and np.array_equal(out[:, 64:], depth_bgr)
    small_gray = render.to_gray8(_depth(shape=(24, 32)))
    out = render.side_by_side(image.astype(np.uint16) * 257, small_gray)  # 16-bit left, gray right
    assert out.shape == (48, 128, 3)
    assert np.array_equal(out[:, :64], image)


def test_running_range_is_stable() -> None:
    rr = render.RunningRange()
    base = _depth(shape=(100, 100))
    lo0, hi0 = rr.update(base)
    assert (lo0, hi0) == pytest.approx(tuple(np.percentile(base, [1, 99])))
    spiky = base.copy()
    spiky[0, :5] = 1e6  # a few outliers barely move a percentile-based range
    lo, hi = rr.update(spiky)
    assert hi == pytest.approx(hi0, rel=0.01)
    for _ in range(60):  # a real change is followed, gradually
        lo, hi = rr.update(base * 10)
    assert hi == pytest.approx(hi0 * 10, rel=0.01)
    assert rr.update(np.full((10, 10), np.nan, np.float32)) == (lo, hi)
    rr.reset()
    assert rr.update(base) == pytest.approx((lo0, hi0))
    big = np.random.default_rng(0).random((2000, 2000), dtype=np.float32)
    assert rr.update(big) is not None  # subsampled, still fine


# --- video ------------------------------------------------------------------------------------


def test_video_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "v.mp4"
    _write_video(path, 12)
    assert _temp_leftovers(tmp_path) == []
    with VideoReader(path) as reader:
        assert reader.fps == pytest.approx(24.0)
        assert reader.frame_count == 12
        assert reader.size == (64, 48)
        frames = list(reader)
    assert [i for i, _ in frames] == list(range(12))
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for _, f in frames)
    assert not reader.truncated and reader.error is None


def test_video_seek(tmp_path: Path) -> None:
    path = tmp_path / "v.avi"
    _write_video(path, 10, fourcc="MJPG")
    with VideoReader(path) as reader:
        all_frames = [f for _, f in reader]
        assert reader.seek(6)
        rest = list(reader)
    assert [i for i, _ in rest] == [6, 7, 8, 9]
    assert np.array_equal(rest[0][1], all_frames[6])
    frames_dir = tmp_path / "seq"
    frames_dir.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames_dir / f"f_{i:03d}.png"), _photo(seed=i))
    with VideoReader(frames_dir / "f_%03d.png") as reader:  # an image sequence pattern
        assert len(list(reader)) == 3


def test_video_writer_adapts_gray_and_resized_frames(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    with VideoWriter(path, 10, (64, 48)) as writer:
        writer.write(_photo())
        writer.write(_photo()[:, :, 0])  # gray
        writer.write(_photo(100, 120))  # other size
        writer.write(_photo().astype(np.uint16) * 257)  # 16-bit
    assert _count_frames(path) == 4


def test_video_writer_ctrl_c_keeps_playable_file(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    with pytest.raises(KeyboardInterrupt), VideoWriter(path, 25, (64, 48)) as writer:
        for i in range(10):
            if i == 5:
                raise KeyboardInterrupt
            writer.write(_photo(seed=i))
    assert path.is_file() and _temp_leftovers(tmp_path) == []
    with VideoReader(path) as reader:
        assert reader.frame_count == 5 and len(list(reader)) == 5


def test_video_writer_other_exception_keeps_frames_discard_drops_them(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    with pytest.raises(RuntimeError), VideoWriter(path, 25, (64, 48)) as writer:
        writer.write(_photo())
        raise RuntimeError("model failed")
    assert _count_frames(path) == 1
    writer = VideoWriter(tmp_path / "w.mp4", 25, (64, 48))
    writer.write(_photo())
    writer.discard()
    assert not (tmp_path / "w.mp4").exists() and _temp_leftovers(tmp_path) == []
    empty = VideoWriter(tmp_path / "e.mp4", 25, (64, 48))
    assert empty.close() is False and not (tmp_path / "e.mp4").exists()


def test_video_writer_errors(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError):
        VideoWriter(tmp_path / "afile" / "v.mp4", 25, (64, 48))
    with pytest.raises(OutputError, match="cannot encode 'mp4v' into a .weird file"):
        VideoWriter(tmp_path / "v.weird", 25, (64, 48))
    with pytest.raises(ValueError):
        VideoWriter(tmp_path / "v.mp4", 0, (64, 48))
    assert _temp_leftovers(tmp_path) == []


def test_video_writer_read_only_directory(tmp_path: Path, restore_mode: None) -> None:
    ro = _readonly_dir(tmp_path)
    with pytest.raises(OutputError, match="permission denied"):
        VideoWriter(ro / "v.mp4", 25, (64, 48))


def test_video_writer_refused_by_opencv_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Refusing:
        def __init__(self, *args) -> None:
            Path(args[0]).write_bytes(b"")  # some backends create the file before failing

        def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
            return False

    monkeypatch.setattr(video.cv2, "VideoWriter", Refusing)
    monkeypatch.setattr(video.os, "access", lambda path, mode: False)
    with pytest.raises(OutputError, match=r"cannot write video .*v\.mp4: permission denied"):
        VideoWriter(tmp_path / "v.mp4", 25, (64, 48))
    assert list(tmp_path.iterdir()) == []


def test_truncated_video_yields_what_it_can(tmp_path: Path) -> None:
    src = tmp_path / "src.mp4"
    _write_video(src, 30)
    fast = faststart(src.read_bytes())
    (tmp_path / "fast.mp4").write_bytes(fast)
    assert _count_frames(tmp_path / "fast.mp4") == 30  # the rewrite itself is valid
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(fast[: len(fast) // 2])
    with VideoReader(cut) as reader:
        assert reader.frame_count == 30
        frames = list(reader)
    assert 0 < len(frames) < 30
    assert reader.truncated
    assert reader.error == "decode error (truncated or corrupt file; it lists 30 frames)"
    # OpenCV's own layout keeps the index at the end: half a file cannot even be opened.
    (tmp_path / "cut2.mp4").write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(VideoOpenError, match="truncated"):
        VideoReader(tmp_path / "cut2.mp4")


def test_truncated_avi_yields_frames(tmp_path: Path) -> None:
    src = tmp_path / "src.avi"
    _write_video(src, 30, fourcc="MJPG")
    (tmp_path / "cut.avi").write_bytes(src.read_bytes()[: src.stat().st_size * 2 // 3])
    with VideoReader(tmp_path / "cut.avi") as reader:
        n = sum(1 for _ in reader)
    assert 0 < n < 30 and reader.truncated


def test_bad_videos_raise_video_open_error(tmp_path: Path, capfd) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    expected = {
        "empty.mp4": "cannot open: not a video, an unsupported codec, or a truncated file",
        "garbage.mp4": "cannot open: not a video, an unsupported codec, or a truncated file",
        "missing.mp4": "no such file",
        ".": "is a directory, not a video",
    }
    for name, message in expected.items():
        with pytest.raises(VideoOpenError) as info:
            VideoReader(tmp_path / name)
        assert str(info.value) == message
    assert capfd.readouterr().err == ""  # FFmpeg's "moov atom not found" is silenced


def test_frame_dir_writer(tmp_path: Path) -> None:
    depth = _depth()
    png = FrameDirWriter(tmp_path / "frames", "clip", "png")
    path = png.write(123, depth)
    assert path == tmp_path / "frames" / "clip_000123.png"
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and np.array_equal(back, render.to_gray16(depth))
    npy = FrameDirWriter(tmp_path / "frames", "clip", "npy")
    assert np.array_equal(np.load(npy.write(7, depth.astype(np.float64))), depth)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["clip_000007.npy", "clip_000123.png"]
    with pytest.raises(ValueError):
        FrameDirWriter(tmp_path, "x", "jpg")


# --- camera -----------------------------------------------------------------------------------


def test_missing_camera_fails_fast() -> None:
    start = time.perf_counter()
    with pytest.raises(VideoOpenError, match="no camera at index 99"):
        open_source(99, None)
    with pytest.raises(VideoOpenError, match="no camera at index 98"):
        open_source(None, "98")  # digits that are not a file: a camera index
    assert time.perf_counter() - start < 10


def test_open_source_file_and_arguments(tmp_path: Path) -> None:
    _write_video(tmp_path / "v.avi", 3, fourcc="MJPG")
    with open_source(None, tmp_path / "v.avi") as reader:
        assert reader.frame_count == 3
    with pytest.raises(ValueError):
        open_source(None, None)
    with pytest.raises(ValueError):
        open_source(0, "x.mp4")
    with pytest.raises(VideoOpenError, match=r"could not open the stream \(unreachable"):
        open_source(None, "rtsp://127.0.0.1:9/stream")


# --- window -----------------------------------------------------------------------------------


def test_key_names() -> None:
    assert window.key_name(-1) is None
    assert window.key_name(ord("q")) == "q" and window.key_name(ord("Q")) == "q"
    assert window.key_name(27) == "esc" and window.key_name(32) == "space"
    assert window.key_name(0x100000 | ord("s")) == "s"  # modifier bits from some backends


def test_draw_overlay() -> None:
    frame = np.full((120, 200, 3), 200, np.uint8)
    out = window.draw_overlay(frame, ["12.3 fps", "vits fp16"])
    assert out.shape == frame.shape and (frame == 200).all()  # caller's frame untouched
    corner = out[:30, :60]
    assert (corner == 255).any() and (corner < 100).any()  # white text on a dark box
    assert (out[-10:, -10:] == 200).all()  # rest unchanged
    assert np.array_equal(window.draw_overlay(frame, []), frame)
    assert window.draw_overlay(frame[:, :, 0], ["gray"]).shape == (120, 200, 3)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY is an X11 notion")
def test_window_without_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(window.DisplayError, match=r"no display available \(use --no-window\)"):
        window.DepthWindow("depth")
    if not window._x_server_reachable(":97"):
        monkeypatch.setenv("DISPLAY", ":97")
        with pytest.raises(window.DisplayError, match="cannot connect to X display :97"):
            window.DepthWindow("depth")


def test_window_headless_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    info = "General configuration\n  GUI:                           NONE\n"
    monkeypatch.setattr(window.cv2, "getBuildInformation", lambda: info)
    assert window.gui_backend() is None
    with pytest.raises(window.DisplayError, match="--no-window"):
        window.DepthWindow("depth")


def _display_usable() -> bool:
    try:
        window.check_display()
    except window.DisplayError:
        return False
    return True


@pytest.mark.skipif(not _display_usable(), reason="no GUI backend or no reachable display")
def test_window_show_and_close() -> None:
    with window.DepthWindow("depthcli test") as win:
        win.show(_photo(), ["hello"])
        assert win.poll_key(10) in (None, *"abcdefghijklmnopqrstuvwxyz")
        assert not win.closed
    assert win.closed


def test_reader_error_attributes_exist_for_callers(tmp_path: Path) -> None:
    # The CLI reports "stopped after N frames: decode error" from these without guessing.
    _write_video(tmp_path / "v.avi", 2, fourcc="MJPG")
    reader = VideoReader(tmp_path / "v.avi")
    assert (reader.truncated, reader.error, reader.frames_read, reader.position) == (False, None, 0, 0)
    list(reader)
    assert reader.frames_read == 2 and reader.position == 2
    reader.close()
    assert video.is_url("http://x/y.mp4") and not video.is_url("C:/x.mp4")
    assert inputs.is_image_name("A.JPEG") and not inputs.is_image_name("notes.txt")


# ----------------------------------------------------------------------------------- own outputs
def test_depthcli_outputs_are_told_by_name_and_header(tmp_path: Path) -> None:
    """#25 item 2: a file is depthcli's output when its name follows the output rule AND its
    header carries depthcli's metadata (an .npy, which has none, by its name)."""
    from depthcli.io.formats.exr import encode_exr
    from depthcli.io.formats.metadata import add_png_text, is_depthcli_output, to_json
    from depthcli.io.formats.ply import VERTEX, encode_ply
    from depthcli.io.writers import encode_png

    meta = {"depthcli": "0"}
    png = encode_png(np.zeros((4, 5, 3), np.uint8))
    depth = np.zeros((3, 3), np.float32)
    files = {
        "a_depth.png": (add_png_text(png, to_json(meta)), True),
        "b_depth.png": (png, False),  # a photo someone named so
        "c.png": (add_png_text(png, to_json(meta)), False),  # ours, renamed: a photo now
        "d_depth.exr": (encode_exr(depth, meta), True),
        "e_depth.exr": (encode_exr(depth), False),
        "f_depth.ply": (encode_ply(np.zeros(2, VERTEX), meta), True),
        "g_depth.ply": (encode_ply(np.zeros(2, VERTEX)), False),
        "h_depth.npy": (b"\x93NUMPY", True),
        "i_depth.png": (b"", False),
        "clip_depth_frames/clip_000001.png": (add_png_text(png, to_json(meta)), True),
        "clip_depth_frames/clip_000002.npy": (b"\x93NUMPY", True),
    }
    for name, (data, _) in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    assert {name: is_depthcli_output(tmp_path / name) for name in files} == {n: ours for n, (_, ours) in files.items()}


def test_folder_and_glob_inputs_leave_depthcli_outputs_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from depthcli.io.formats.metadata import add_png_text, to_json
    from depthcli.io.writers import encode_png

    monkeypatch.chdir(tmp_path)
    png = encode_png(np.zeros((4, 5, 3), np.uint8))
    (tmp_path / "p").mkdir()
    for name in ("a.png", "b_depth.png"):
        (tmp_path / "p" / name).write_bytes(png)
    (tmp_path / "p" / "a_depth.png").write_bytes(add_png_text(png, to_json({"depthcli": "0"})))
    for specs, names, left_out in ((["p"], ["a.png", "b_depth.png"], 1), (["p/*.png"], ["a.png", "b_depth.png"], 1),
                                   (["p/a_depth.png"], ["a_depth.png"], 0)):  # named explicitly: taken
        items, problems, count = collect_inputs(specs, recursive=False, list_file=None, stdin=io.BytesIO())
        assert ([i.relative.name for i in items], problems, count) == (names, [], left_out), specs


def test_a_signal_inside_a_finalisation_waits_for_its_end(tmp_path: Path) -> None:
    """#25 item 3: SIGTERM landing while outputs are finalised (signals_held) is delivered once
    they are whole: both files written, no temporary file, then the handler's interrupt. In a
    fresh interpreter: a signal sent to the test process itself would reach whatever native
    threads earlier tests left in it."""
    code = f"""
import os, signal, sys, time
from pathlib import Path
from depthcli.io.writers import signals_held, write_bytes

def interrupt(signum, frame):
    raise KeyboardInterrupt

signal.signal(signal.SIGTERM, interrupt)
out = Path({str(tmp_path)!r})
try:
    with signals_held():
        write_bytes(out / "a_depth.png", b"1" * 1000)
        os.kill(os.getpid(), signal.SIGTERM)  # lands here, between the output and its sidecar
        time.sleep(0.05)  # Python runs handlers between bytecodes: it would have run by now
        write_bytes(out / "a_depth.json", b"{{}}")
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted after", sorted(p.name for p in out.iterdir()),
          "handler back:", signal.getsignal(signal.SIGTERM) is interrupt)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "interrupted after ['a_depth.json', 'a_depth.png'] handler back: True"
