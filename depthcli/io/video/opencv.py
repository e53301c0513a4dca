"""Video in and out through OpenCV's FFmpeg backend, with one-line errors and atomic output.

Cameras and network streams are read here (``depthcli webcam``, URL inputs); video files, with
their timestamps and sound, go through PyAV (``io.video.pyav``), image sequences through
``io.video.sequence``. ``open_video`` picks the reader for what ``depthcli video`` is given.

OpenCV 5.0 facts this relies on (checked empirically): ``VideoCapture`` gives no error on a
failed read, so "end of file" and "decode error" look the same, and the container's frame
count is the only way to tell them apart; ``VideoWriter`` silently drops frames whose size or
channel count differs from what it was opened with, so ``VideoWriter.write`` adapts them; an
MP4 is only playable once ``release()`` has written its index (the ``moov`` atom, at the end),
so an interrupted run must still release the writer.
"""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from .. import images  # noqa: F401 - importing it silences OpenCV/FFmpeg logging
from ..render import to_bgr8, to_gray16
from ..writers import (
    OutputError,
    commit_video,
    encode_png,
    ensure_parent,
    temp_path_for,
    write_bytes,
    write_npy,
)

DEFAULT_FPS = 30.0
# Network sources: give up opening / waiting for a frame after this long instead of hanging.
STREAM_TIMEOUT_MS = 10_000


class VideoOpenError(Exception):
    """A video, stream or camera could not be opened or gave no frame; one-line message."""


def ended_short(frame_count: int | None, frames_reached: int) -> bool:
    """Whether a file that stopped yielding frames after ``frames_reached`` broke midway: its
    container lists more, beyond 1% (some containers only estimate the count)."""
    return frame_count is not None and frame_count - frames_reached > max(1, frame_count // 100)


def decode_error(frame_count: int | None) -> str:
    """The reason given for a video that broke midway (the caller says after how many frames)."""
    listed = f"; it lists {frame_count} frames" if frame_count else ""
    return f"decode error (truncated or corrupt file{listed})"


def is_url(source: str) -> bool:
    """``rtsp://``, ``http://``, ... anything with a scheme is handed to FFmpeg as is."""
    return "://" in source


class VideoReader:
    """Frames of a file or URL as ``(index, frame_bgr_u8)``.

    Opening decodes the first frame, so a file OpenCV "opens" but cannot decode fails here, not
    midway. A decode failure later ends iteration quietly and sets ``truncated`` and ``error``
    (the reason only: the caller says "stopped after N frames: <error>").
    """

    def __init__(self, source: str | Path) -> None:
        source = str(source)
        self.label = source
        # Messages leave the source out: callers prefix it, as for images.
        if is_url(source):
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
            ]  # fmt: skip
            cap = _capture(source, cv2.CAP_ANY, params)
            reason = "could not open the stream (unreachable, or not a video stream)"
        else:
            # "%": an image sequence pattern ("frames/%06d.png") that OpenCV expands itself.
            if "%" not in source and not os.path.exists(source):
                raise VideoOpenError("no such file")
            if os.path.isdir(source):
                raise VideoOpenError("is a directory, not a video")
            cap = _capture(source, cv2.CAP_ANY)
            reason = "cannot open: not a video, an unsupported codec, or a truncated file"
        self._init(cap, reason, "no frame could be decoded", live=False)

    @classmethod
    def from_capture(
        cls, cap: cv2.VideoCapture, label: str, *, open_error: str, no_frame_error: str, live: bool
    ) -> VideoReader:
        """Wrap an already created capture (cameras): same checks, same interface. ``live``
        sources have no frame count, cannot seek, and a failed read is an error."""
        reader = cls.__new__(cls)
        reader.label = label
        reader._init(cap, open_error, no_frame_error, live=live)
        return reader

    def _init(
        self, cap: cv2.VideoCapture | None, open_error: str, no_frame_error: str, *, live: bool
    ) -> None:
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            raise VideoOpenError(open_error)
        self._cap = cap
        self.live = live
        first = self._read()
        if first is None:
            cap.release()
            raise VideoOpenError(no_frame_error)
        self._pending: np.ndarray | None = first
        self._next_index = 0
        self.size: tuple[int, int] = (first.shape[1], first.shape[0])  # (w, h) of real frames
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps: float = fps if math.isfinite(fps) and 0 < fps <= 1000 else DEFAULT_FPS
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count: int | None = int(count) if not live and math.isfinite(count) and count > 0 else None
        self.frames_read = 0  # frames yielded so far
        self.truncated = False
        self.error: str | None = None

    def _read(self) -> np.ndarray | None:
        try:
            ok, frame = self._cap.read()
        except cv2.error:
            return None
        if not ok or frame is None or frame.size == 0:
            return None
        if frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3:
            return frame
        return to_bgr8(frame)  # 16-bit or gray streams (some cameras, CAP_IMAGES)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        while True:
            frame = self._pending if self._pending is not None else self._read()
            self._pending = None
            if frame is None:
                self._note_end()
                return
            index = self._next_index
            self._next_index += 1
            self.frames_read += 1
            yield index, frame

    def _note_end(self) -> None:
        """EOF and decode errors look alike; a shortfall against the container's frame count
        (beyond 1%, since some containers only estimate it) means the latter."""
        if self.live:
            self.truncated = True
            self.error = "camera stopped delivering frames"
            return
        if ended_short(self.frame_count, self._next_index):
            self.truncated = True
            self.error = decode_error(self.frame_count)

    @property
    def position(self) -> int:
        """Index of the frame the next iteration step yields."""
        return self._next_index

    def seek(self, frame_index: int) -> bool:
        """Continue from ``frame_index``; False if the source cannot seek (streams, cameras)."""
        if frame_index < 0:
            raise ValueError("frame index must be >= 0")
        if self.live:
            return False
        try:
            ok = self._cap.set(cv2.CAP_PROP_POS_FRAMES, float(frame_index))
        except cv2.error:
            ok = False
        if not ok:
            return False
        self._pending = None
        self._next_index = frame_index
        self.truncated, self.error = False, None
        return True

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _capture(source: str | int, api: int, params: list[int] | None = None) -> cv2.VideoCapture | None:
    try:
        return cv2.VideoCapture(source, api, params or [])
    except cv2.error:
        return None


class VideoWriter:
    """Frames to a video file, via a hidden temporary file renamed into place by ``close()``.

    As a context manager it closes on *every* exit, exceptions and Ctrl-C included: the frames
    written so far are finalised into a playable file rather than thrown away (a long run
    interrupted at 90% keeps its 90%). Call ``discard()`` explicitly to drop the output.
    """

    def __init__(
        self, final_path: str | Path, fps: float, size: tuple[int, int], fourcc: str = "mp4v"
    ) -> None:
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be positive, got {fps}")
        if len(fourcc) != 4:
            raise ValueError(f"fourcc must be 4 characters, got {fourcc!r}")
        self.final_path = Path(final_path)
        self.size = (int(size[0]), int(size[1]))
        if self.size[0] <= 0 or self.size[1] <= 0:
            raise ValueError(f"invalid frame size {size}")
        ensure_parent(self.final_path)
        self._tmp = temp_path_for(self.final_path)
        self.frames_written = 0
        self._done = False
        try:
            code = cv2.VideoWriter_fourcc(*fourcc)
            self._writer = cv2.VideoWriter(str(self._tmp), code, float(fps), self.size)
            opened = self._writer.isOpened()
        except cv2.error:
            opened = False
        if not opened:
            self._remove_tmp()
            raise OutputError(f"cannot write video {self.final_path}: {self._why_not_opened(fourcc)}")

    def _why_not_opened(self, fourcc: str) -> str:
        if not os.access(self.final_path.parent, os.W_OK):
            return "permission denied"
        suffix = self.final_path.suffix or "(no extension)"
        return f"OpenCV cannot encode {fourcc!r} into a {suffix} file"

    def write(self, frame: np.ndarray) -> None:
        """Append one frame; gray, BGRA or 16-bit frames are converted and other sizes resized,
        because OpenCV would silently drop them."""
        if self._done:
            raise ValueError("write() after close()")
        frame = to_bgr8(frame)
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(frame))
        self.frames_written += 1

    def close(self) -> bool:
        """Finish the file and move it into place; True if a video was written. With no frame
        written there is nothing playable, so nothing is left behind and False is returned."""
        if self._done:
            return self.final_path.exists() and self.frames_written > 0
        self._done = True
        self._writer.release()
        return commit_video(self._tmp, self.final_path, self.frames_written, self._check_written)

    def _check_written(self) -> str | None:
        """OpenCV's writer ignores failed writes (a full disk, a file size limit): read the
        file back, its frame count and its last frame, before calling it done."""
        cap = _capture(str(self._tmp), cv2.CAP_ANY)
        try:
            if cap is not None and cap.isOpened():
                count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
                known = math.isfinite(count) and count > 0  # some containers only estimate it
                if not known or count >= self.frames_written - max(1, self.frames_written // 100):
                    last = min(self.frames_written, int(count)) - 1 if known else 0
                    if (last == 0 or cap.set(cv2.CAP_PROP_POS_FRAMES, float(last))) and cap.read()[0]:
                        return None
        except cv2.error:
            pass
        finally:
            if cap is not None:
                cap.release()
        return "the file is incomplete (no space left on the device, or over a file size limit)"

    def discard(self) -> None:
        """Release and delete the temporary file; the final path is not touched."""
        if not self._done:
            self._done = True
            self._writer.release()
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        with contextlib.suppress(OSError):
            self._tmp.unlink()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # keep the frames written so far, but never mask the original exception
            self.close()
        except Exception:  # noqa: BLE001
            self.discard()


class FrameDirWriter:
    """Per-frame outputs ``<dir>/<stem>_000123.png`` (16-bit gray), ``.npy`` or ``.exr`` (float32
    depth), each written atomically so an interrupted run leaves only complete frames; ``meta``
    (a dict) goes into the PNG's text chunk or the EXR's header (``io.formats.metadata``)."""

    KINDS = ("png", "npy", "exr")

    def __init__(self, directory: str | Path, stem: str, kind: str = "png") -> None:
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        self.directory = Path(directory)
        self.stem = stem
        self.kind = kind
        self.frames_written = 0

    def path_for(self, index: int) -> Path:
        return self.directory / f"{self.stem}_{index:06d}.{self.kind}"

    def write(
        self, index: int, depth: np.ndarray, value_range: tuple[float, float] | None = None,
        meta: dict | None = None,
    ) -> Path:
        """Float depth becomes 16-bit PNG (min-max, or ``value_range``), float32 .npy or .exr;
        already-rendered uint8/uint16 arrays go into a PNG unchanged."""
        from ..formats.metadata import add_png_text, to_json

        path = self.path_for(index)
        depth = np.asarray(depth)
        if self.kind == "npy":
            write_npy(path, depth.astype(np.float32, copy=False))
        elif self.kind == "exr":
            from ..formats.exr import encode_exr

            write_bytes(path, encode_exr(depth, meta))
        else:
            png = encode_png(to_gray16(depth, value_range) if depth.dtype.kind == "f" else depth)
            write_bytes(path, add_png_text(png, to_json(meta)) if meta is not None else png)
        self.frames_written += 1
        return path


def open_video(source: str | Path, *, fps: object = None):  # noqa: ANN201 - one of three readers
    """The reader for what ``depthcli video`` is given, all with one interface: a file through
    PyAV (``io.video.pyav``: exact timestamps, the sound track, more codecs), an image sequence
    (a folder, ``frame_%05d.png`` or a glob; ``io.video.sequence``, at ``fps``, default 24) or a
    stream URL through OpenCV. Raises ``VideoOpenError`` (one line)."""
    text = str(source)
    if is_url(text):
        return VideoReader(text)
    from .sequence import is_sequence

    if is_sequence(text):
        from .sequence import SequenceReader

        return SequenceReader(text, fps)
    from .pyav import AvVideoReader

    return AvVideoReader(text)
