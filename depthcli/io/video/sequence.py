"""Image sequences read as a clip: ``shots/`` (a folder), ``shots/frame_%05d.png`` (printf
pattern) or ``'shots/*.png'`` (a quoted glob), frames in natural order (``f2`` before ``f10``).

VFX and compositing tools exchange frames, not clips, so ``depthcli video`` takes them as input
with the interface of the video readers (``io.video.opencv`` / ``io.video.pyav``): the same pipeline,
outputs and error contract. Frames are decoded like ``depthcli image`` decodes files
(``io.images.read_image``: same pixels, 16-bit kept), so a frame's depth is the depth the image
command gives for it. OpenEXR frames (scene-linear float) are read with the ``openexr`` package
when it is installed, encoded to sRGB as a viewer without a look would show them, at 16 bits.
A frame that cannot be read ends the clip there, like a decode error in a video.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ..formats.metadata import is_depthcli_output
from ..images import IMAGE_EXTENSIONS, ImageReadError, read_image
from .opencv import VideoOpenError

DEFAULT_SEQUENCE_FPS = Fraction(24)
_GLOB_CHARS = frozenset("*?[")
_PRINTF = re.compile(r"%(0?)(\d*)d")
_DIGITS = re.compile(r"(\d+)")


def frame_extensions() -> frozenset[str]:
    """What a folder is scanned for: the images OpenCV reads, and EXR when OpenEXR is there."""
    try:
        import OpenEXR  # noqa: F401
    except ImportError:
        return IMAGE_EXTENSIONS
    return IMAGE_EXTENSIONS | {"exr"}


def is_sequence(source: str) -> bool:
    """A folder, a ``%d`` pattern or a glob (an existing file is never a sequence)."""
    if os.path.isdir(source):
        return True
    if os.path.exists(source) or "://" in source:
        return False
    name = os.path.basename(source)
    return bool(_PRINTF.search(name)) or bool(_GLOB_CHARS.intersection(source))


def natural_key(path: Path) -> list:
    """``frame2`` before ``frame10``: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(path.name)]


def find_frames(source: str) -> tuple[list[Path], int]:
    """The frame files of a folder, pattern or glob in playback order, and how many depthcli
    outputs a folder or glob held and were left out (``image`` run beside the frames writes
    ``f_depth.png`` there; those are not frames); ``VideoOpenError`` with a one-line reason when
    there are none. A ``%d`` pattern names its frames exactly: nothing is left out."""
    if os.path.isdir(source):
        exts = frame_extensions()
        try:
            names = os.listdir(source)
        except OSError as e:
            raise VideoOpenError(f"cannot list the folder: {e.strerror or e}") from None
        frames = [Path(source) / n for n in names
                  if not n.startswith(".") and n.rpartition(".")[2].lower() in exts and "." in n
                  and os.path.isfile(os.path.join(source, n))]
        frames, left_out = _without_outputs(frames)
        if not frames:
            raise VideoOpenError("is a folder with no image frames" + _besides(left_out))
        return sorted(frames, key=natural_key), left_out
    folder, name = os.path.split(source)
    folder = folder or "."
    if _PRINTF.search(name) and not _GLOB_CHARS.intersection(source):
        regex = re.compile(_PRINTF.sub(_printf_regex, re.escape(name)) + r"\Z")
        try:
            names = os.listdir(folder)
        except OSError:
            raise VideoOpenError("no such file or folder (no frame matches the pattern)") from None
        matched = [(tuple(int(g) for g in m.groups()), n) for n in names if (m := regex.match(n))]
        if not matched:
            raise VideoOpenError("no frame matches the pattern")
        return [Path(folder) / n for _, n in sorted(matched)], 0
    import glob

    frames, left_out = _without_outputs([Path(p) for p in glob.glob(source) if os.path.isfile(p)])
    if not frames:
        raise VideoOpenError("no file matches the pattern" + _besides(left_out))
    return sorted(frames, key=lambda p: (natural_key(p.parent), natural_key(p))), left_out


def _without_outputs(frames: list[Path]) -> tuple[list[Path], int]:
    kept = [p for p in frames if not is_depthcli_output(p)]
    return kept, len(frames) - len(kept)


def _besides(left_out: int) -> str:
    return f" (besides {left_out} depthcli output{'s' if left_out != 1 else ''}, left out)" if left_out else ""


def _printf_regex(m: re.Match) -> str:
    width = m.group(2)
    if m.group(1) and width:  # %05d: exactly that many digits (more for numbers that need it)
        return rf"(\d{{{width},}})"
    return r"(\d+)"


def sequence_output(source: str) -> tuple[Path, str]:
    """(folder, stem) of a sequence's outputs: a folder's go beside it (``shots/`` ->
    ``shots_depth.mp4``), a pattern's beside its frames, named after the fixed part of the name
    (``shots/frame_%05d.png`` -> ``shots/frame_depth.mp4``) or else the folder."""
    src = Path(source)
    if os.path.isdir(source):
        real = src.resolve()
        return real.parent, real.name or "frames"
    folder = src.parent
    prefix = re.split(r"%|[*?\[]", src.name, maxsplit=1)[0].rstrip("_-. ")
    stem = prefix or (folder.resolve().name or "frames")
    return folder, stem


def parse_rate(text: str | float | Fraction) -> Fraction:
    """``24``, ``23.976``, ``24000/1001`` -> an exact positive frame rate."""
    if isinstance(text, Fraction):
        rate = text
    else:
        try:
            rate = Fraction(str(text).strip())
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{text!r}: a frame rate is a number (24, 23.976) or a ratio (24000/1001)") from None
    if not (0 < rate <= 1000):
        raise ValueError(f"{text!r}: the frame rate must be above 0 and at most 1000")
    return rate.limit_denominator(1001 * 1000)


def read_frame(path: Path) -> np.ndarray:
    """One frame: BGR uint8 or uint16 (as ``depthcli image`` reads it). ``ImageReadError``."""
    if path.suffix.lower() == ".exr" and "exr" not in IMAGE_EXTENSIONS:
        return _read_exr_colour(path)
    return read_image(path)


def _read_exr_colour(path: Path) -> np.ndarray:
    """A colour (or luminance) EXR as 16-bit BGR: linear values clipped to [0, 1], sRGB-encoded."""
    try:
        import OpenEXR
    except ImportError:
        raise ImageReadError("EXR frames need the openexr package (pip install openexr)") from None
    try:
        channels = {name: np.asarray(c.pixels)
                    for name, c in OpenEXR.File(str(path), separate_channels=True).channels().items()}
    except (RuntimeError, OSError, ValueError) as e:
        raise ImageReadError(f"not a readable EXR file ({str(e).strip() or type(e).__name__})") from None
    if all(k in channels for k in "RGB"):
        rgb = np.stack([channels["R"], channels["G"], channels["B"]], axis=-1)
    elif "Y" in channels:
        rgb = np.repeat(channels["Y"][..., None], 3, axis=-1)
    else:
        raise ImageReadError(f"EXR without R, G, B or Y channels (has {', '.join(sorted(channels)) or 'none'})")
    linear = np.clip(np.nan_to_num(rgb.astype(np.float64)), 0.0, 1.0)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)
    return np.ascontiguousarray(np.rint(srgb[..., ::-1] * 65535.0).astype(np.uint16))


class SequenceReader:
    """Frames of an image sequence as ``(index, frame_bgr)``, with the interface of the video
    readers: ``rate``/``fps`` (``--fps``), ``time_of(index)`` (index / rate), no sound. Frames
    of another size than the first are scaled to it, as a video's are."""

    live = False
    audio = None

    def __init__(self, source: str, fps: float | Fraction | str | None = None) -> None:
        self.label = source
        self.paths, self.left_out = find_frames(source)  # left_out: depthcli outputs among the files
        self.rate: Fraction = parse_rate(fps) if fps is not None else DEFAULT_SEQUENCE_FPS
        self.fps = float(self.rate)
        self.time_base = 1 / self.rate
        self.frame_count: int | None = len(self.paths)
        self.frames_read = 0
        self.truncated = False
        self.error: str | None = None
        self._next_index = 0
        try:
            first = read_frame(self.paths[0])
        except ImageReadError as e:
            raise VideoOpenError(f"{self.paths[0].name}: {e}") from None
        self.size: tuple[int, int] = (first.shape[1], first.shape[0])
        self._pending: np.ndarray | None = first

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        while self._next_index < len(self.paths):
            index = self._next_index
            frame, self._pending = self._pending, None
            if frame is None:
                try:
                    frame = read_frame(self.paths[index])
                except ImageReadError as e:
                    self.truncated = True
                    self.error = f"{self.paths[index].name}: {e}"
                    return
                if (frame.shape[1], frame.shape[0]) != self.size:
                    frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
            self._next_index += 1
            self.frames_read += 1
            yield index, frame

    def time_of(self, index: int) -> Fraction:
        return Fraction(index) / self.rate

    @property
    def position(self) -> int:
        return self._next_index

    def seek(self, frame_index: int) -> bool:
        if frame_index < 0:
            raise ValueError("frame index must be >= 0")
        if frame_index != self._next_index:
            self._pending = None
        self._next_index = frame_index
        return True

    def close(self) -> None:
        self._pending = None

    def __enter__(self) -> SequenceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
