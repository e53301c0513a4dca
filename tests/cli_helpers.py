"""Helpers for the end-to-end CLI tests: run the installed ``depthcli`` in a subprocess, build a
tiny fast checkpoint, and make small images and videos with OpenCV.

Everything the CLI tests run goes through the real entry point with no network: the
environment has no ``DEPTHCLI_MODEL``, ``HF_HUB_OFFLINE=1`` and a throw-away ``HF_HOME``.
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SIZE = 70  # --size for the tests: a 64x48 image is processed at 98x70, milliseconds per image
SIZE_ARG = ("--size", str(SIZE))
PATCH = 14


# ----------------------------------------------------------------------------------- running
def depthcli_command() -> list[str]:
    """The installed entry point: ``depthcli`` on PATH, else ``<sys.prefix>/bin/depthcli``."""
    found = shutil.which("depthcli")
    if found:
        return [found]
    fallback = Path(sys.prefix) / ("Scripts" if os.name == "nt" else "bin") / "depthcli"
    if fallback.exists():
        return [str(fallback)]
    return [sys.executable, "-m", "depthcli"]  # not installed as a script: the module still runs


_SESSION_DIRS: dict[str, str] = {}


def _session_dir(prefix: str) -> str:
    """One throw-away folder per prefix for the whole test session, removed at exit."""
    if prefix not in _SESSION_DIRS:
        _SESSION_DIRS[prefix] = tempfile.mkdtemp(prefix=prefix)
        atexit.register(shutil.rmtree, _SESSION_DIRS[prefix], ignore_errors=True)
    return _SESSION_DIRS[prefix]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """No default model, never the network, no display (unless ``extra`` sets one)."""
    env = dict(os.environ)
    for name in ("DEPTHCLI_MODEL", "DISPLAY", "WAYLAND_DISPLAY", "HF_ENDPOINT", "HF_TOKEN"):
        env.pop(name, None)
    env.update(HF_HUB_OFFLINE="1", HF_HOME=_session_dir("depthcli-cli-hf-"), PYTHONUNBUFFERED="1")
    # The tiny model gains nothing from threads, and on a busy shared machine two spinning
    # OpenMP workers make each forward 10-50x slower (seconds instead of milliseconds).
    env.setdefault("OMP_NUM_THREADS", "1")
    # The reference backend by default: the OpenVINO one (the CLI's default on the CPU) converts
    # each new model once and compiles it in every process, which these tests need not pay
    # hundreds of times; tests/test_backends.py runs the commands on it. Conversions of the
    # tests that do use it go to a throw-away cache, never the user's ~/.cache.
    env.setdefault("DEPTHCLI_BACKEND", "torch")
    env.setdefault("XDG_CACHE_HOME", _session_dir("depthcli-cli-cache-"))
    if extra:
        env.update(extra)
    return env


def run_cli(*args: object, input: bytes | str | None = None, timeout: float = 120,  # noqa: A002
            cwd: str | Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``depthcli ARGS`` to completion; stdout/stderr captured (bytes stdout, text stderr)."""
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run(
        [*depthcli_command(), *map(str, args)],
        input=data, stdin=None if data is not None else subprocess.DEVNULL,
        capture_output=True, timeout=timeout, cwd=cwd, env=cli_env(env))
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    return proc


def _default_sigint() -> None:
    # A child inherits an ignored SIGINT (e.g. pytest started as a background job), and Python
    # then never raises KeyboardInterrupt; a user's terminal delivers Ctrl-C with the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen_cli(*args: object, cwd: str | Path | None = None, env: dict[str, str] | None = None,
              stderr_path: Path | None = None) -> subprocess.Popen:
    """Start ``depthcli ARGS`` without waiting; stderr goes to ``stderr_path`` (a file, so the
    pipe can never fill and block the process)."""
    err = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL  # noqa: SIM115 - child owns it
    try:
        return subprocess.Popen([*depthcli_command(), *map(str, args)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, cwd=cwd, env=cli_env(env),
                                preexec_fn=_default_sigint if os.name == "posix" else None)
    finally:
        if stderr_path:
            err.close()


def stop_process(proc: subprocess.Popen) -> None:
    """Make sure a process we started is gone (tests call it in ``finally``): SIGTERM first,
    so that it can clean up (Xvfb removes its socket and lock), SIGKILL if that is ignored."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def wait_for_lines(proc: subprocess.Popen, path: Path, count: int, timeout: float = 90) -> None:
    """Wait (bounded) until ``path`` (a --stats file) holds ``count`` lines or ``proc`` ends:
    the moment to interrupt a run that is known to be midway."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        time.sleep(0.02)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def temp_leftovers(root: Path) -> list[str]:
    """The writers' hidden temporary files (``.<stem>.<hex>.tmp<suffix>``) under ``root``."""
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob(".*.tmp*"))


# ----------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class TinyModel:
    safetensors: Path  # depthcli's own format: V2, 64 wide, 4 blocks, 2 heads
    unnamed_pth: Path  # the same weights as an original-layout .pth whose name tells no version


def build_tiny_model(directory: Path) -> TinyModel:
    """A perturbed, calibrated random model from ``model_factory`` (so its depth has structure),
    saved as a depthcli ``.safetensors`` and as an anonymously named original ``.pth``."""
    import torch
    from model_factory import (
        ModelSpec,
        Shape,
        assert_non_degenerate,
        build_hf_model,
        save_original_pth,
        save_transformers_dir,
    )

    from depthcli.model import build_model, read_checkpoint, save_safetensors

    shape = Shape(hidden=64, layers=4, heads=2, neck=(8, 16, 32, 64), fusion=32)

    @dataclass(frozen=True)
    class CliSpec(ModelSpec):
        @property
        def shape(self) -> Shape:
            return shape

    hf = build_hf_model(CliSpec("cli-tiny", 2))
    # through the transformers folder, whose config.json carries the head count (a .pth does not)
    net = build_model(read_checkpoint(save_transformers_dir(hf, directory / "hf"), version=2))
    assert net.config.encoder.num_heads == 2 and net.config.version == 2
    path = directory / "tiny-v2.safetensors"
    save_safetensors(net, path)
    with torch.no_grad():  # non-degenerate at the resolution the tests run at
        assert_non_degenerate(net(torch.randn(1, 3, 70, 98, generator=torch.Generator().manual_seed(0))))
    return TinyModel(path, save_original_pth(hf, directory / "weights.pth"))


# ----------------------------------------------------------------------------------- images
def make_image(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """BGR uint8: two gradients, a filled circle and a rectangle (structure for the model)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = rng.uniform(0.3, 1.0, 2)
    img = np.stack([255 * x / max(w - 1, 1) * a, 255 * y / max(h - 1, 1) * b,
                    127 + 100 * np.sin(x / 7 + y / 11 + seed)], axis=-1)
    img = np.clip(img, 0, 255).astype(np.uint8)
    cx, cy = int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4))
    cv2.circle(img, (cx, cy), max(3, min(h, w) // 5), tuple(int(v) for v in rng.integers(0, 256, 3)), -1)
    cv2.rectangle(img, (w // 8, h // 8), (w // 8 + w // 6, h // 8 + h // 5), (20, 200, 240), -1)
    return img


def write_image(path: Path, h: int = 48, w: int = 64, seed: int = 0, kind: str = "bgr") -> np.ndarray:
    """Write a test image (kind: bgr, gray, bgra, bgr16) and return the array written."""
    img = make_image(h, w, seed)
    if kind == "gray":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    elif kind == "bgra":
        alpha = np.full((h, w, 1), 200, np.uint8)
        alpha[: h // 2] = 255
        img = np.concatenate([img, alpha], axis=2)
    elif kind == "bgr16":
        # 16-bit with content between the 8-bit steps, so keeping the precision matters
        img = img.astype(np.uint16) * 257 + np.random.default_rng(seed).integers(0, 200, img.shape, np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img), path
    return img


def jpeg_with_focal_35mm(img: np.ndarray, focal_35mm: int) -> bytes:
    """A JPEG with a minimal big-endian EXIF: IFD0 -> Exif IFD with FocalLengthIn35mmFilm (SHORT)
    and FocalLength (RATIONAL, 4.25 mm, which must lose to the 35 mm value)."""
    jpeg = cv2.imencode(".jpg", img)[1].tobytes()
    exif_ifd_at, rational_at = 26, 26 + 2 + 2 * 12 + 4
    ifd0 = struct.pack(">H", 1) + struct.pack(">HHII", 0x8769, 4, 1, exif_ifd_at) + struct.pack(">I", 0)
    exif = (struct.pack(">H", 2) + struct.pack(">HHIHH", 0xA405, 3, 1, focal_35mm, 0)
            + struct.pack(">HHII", 0x920A, 5, 1, rational_at) + struct.pack(">I", 0))
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + ifd0 + exif + struct.pack(">II", 425, 100)
    assert len(b"MM\x00\x2a" + struct.pack(">I", 8) + ifd0) == exif_ifd_at and len(tiff) == rational_at + 8
    payload = b"Exif\0\0" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


# ----------------------------------------------------------------------------------- videos
def video_frame(i: int, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    """Frame ``i`` of a test clip: a drifting gradient and a moving disc."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([127 + 120 * np.sin((x + 2 * i) / 9), 255 * y / (h - 1), 60 + 0 * x], axis=-1)
    img = img.clip(0, 255).astype(np.uint8)
    cv2.circle(img, ((10 + 3 * i) % w, h // 2), h // 4, (250, 250, 250), -1)
    cv2.rectangle(img, (w // 2, h // 8), (w // 2 + w // 6, h // 3), (0, 0, 255), -1)
    return img


def write_video(path: Path, n: int = 24, fps: float = 25.0, size: tuple[int, int] = (96, 64),
                fourcc: str = "mp4v", frame=video_frame) -> Path:  # noqa: ANN001
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened(), path
    for i in range(n):
        writer.write(frame(i, size))
    writer.release()
    return path


@dataclass
class VideoInfo:
    frames: int  # counted by decoding, not the container's claim
    fps: float
    width: int
    height: int
    first: np.ndarray | None


def video_info(path: Path) -> VideoInfo:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot open {path}"
    fps = cap.get(cv2.CAP_PROP_FPS)
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    n, first = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if first is None:
            first = frame
        n += 1
    cap.release()
    return VideoInfo(n, fps, w, h, first)


# ----------------------------------------------------------------------------------- X11
def read_xwd(data: bytes) -> np.ndarray:
    """An XWD screen dump (``xwd -root``) as an HxWx3 BGR uint8 array: ZPixmap, 24/32 bpp,
    either byte order (the header is always big-endian)."""
    fields = struct.unpack(">25I", data[:100])
    (header_size, _version, pixmap_format, depth, width, height, _xoffset, byte_order, _unit, _bit_order,
     _pad, bits_per_pixel, bytes_per_line, _visual, red_mask, green_mask, blue_mask, _bits_rgb,
     _map_entries, ncolors, _ww, _wh, _wx, _wy, _border) = fields
    assert pixmap_format == 2, f"not a ZPixmap dump (format {pixmap_format})"
    assert bits_per_pixel in (24, 32) and depth >= 24, f"unsupported {bits_per_pixel} bpp, depth {depth}"
    start = header_size + 12 * ncolors
    raw = np.frombuffer(data, np.uint8, count=bytes_per_line * height, offset=start)
    rows = raw.reshape(height, bytes_per_line)
    bpp = bits_per_pixel // 8
    px = rows[:, : width * bpp].reshape(height, width, bpp)
    value = px.astype(np.uint32)
    if not byte_order:  # LSBFirst: the lowest byte comes first
        value = value[..., ::-1]
    word = np.zeros((height, width), np.uint32)
    for k in range(bpp):  # most significant byte first
        word = word << 8 | value[..., k]

    def channel(mask: int) -> np.ndarray:
        shift = (mask & -mask).bit_length() - 1
        top = mask >> shift
        return ((word >> shift) & top) * 255 // top

    return np.stack([channel(blue_mask), channel(green_mask), channel(red_mask)], axis=-1).astype(np.uint8)
