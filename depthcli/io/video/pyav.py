"""Video files in and out through PyAV (FFmpeg's libraries, shipped in its wheels).

Why PyAV rather than OpenCV here: OpenCV's writer only offers ``mp4v`` in MP4 (which browsers,
phones and many editors refuse), drops the sound, and neither its reader nor its writer sees
timestamps, so a variable-frame-rate clip drifts out of time. With PyAV:

- the output is H.264 (yuv420p, MP4 with the index at the front) by default, HEVC or ``mp4v``
  on request; every frame keeps the *source's* timestamp (same time base, shifted so the output
  starts at 0), so frame count, rate and timing match exactly, VFR included;
- the source's sound is carried over (``io.video.audio``);
- the reader exposes each frame's timestamp, the decoded pixels are those OpenCV gives (same
  FFmpeg conversion; checked by the tests), and phone videos are turned upright as OpenCV does.

OpenCV stays for cameras and network streams (``io.video.opencv``), where its capture API serves
better. Failures keep ``io.video.opencv``'s contract: ``VideoOpenError`` with one line, a decode error
midway ends iteration and sets ``truncated``/``error``, and the writer's output appears only
once complete (temporary file, renamed by ``close()``), finalised on every exit.
"""
from __future__ import annotations

import contextlib
import errno
import math
import os
from collections import OrderedDict
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import cv2
import numpy as np

from ..render import to_bgr8
from ..writers import OutputError, commit_video, ensure_parent, temp_path_for
from .audio import AudioError, AudioMuxer, AudioTrack, find_audio
from .opencv import DEFAULT_FPS, VideoOpenError, decode_error, ended_short

CANNOT_OPEN = "cannot open: not a video, an unsupported codec, or a truncated file"
NO_FRAME = "no frame could be decoded"

# --codec name -> (FFmpeg encoder, MP4 codec tag or None for the muxer's default)
CODECS: dict[str, tuple[str, str | None]] = {
    "h264": ("libx264", None),
    "hevc": ("libx265", "hvc1"),  # hvc1, not FFmpeg's default hev1: QuickTime/Apple play only hvc1
    "mp4v": ("mpeg4", None),
}
# Depth renders are smooth gradients, where x264's default CRF 23 shows banding and blocky
# contours; 18 is the usual "visually lossless" point, and depth compresses well anyway (a
# 1280x720 depth video at CRF 18 stays a few Mbit/s). x265 reaches the same look at a higher CRF.
DEFAULT_CRF = {"h264": 18, "hevc": 20}
MP4V_QSCALE = 3  # MPEG-4 Part 2 has no CRF: a fixed quantiser, high quality
_MPEG4_MAX_TB_DEN = 65535  # MPEG-4 Part 2 limit on the time base denominator
# yuv420p (what H.264/HEVC players and editors expect) stores colour per 2x2 block, so both
# sides must be even; the BT.601 matrix is used to convert and is written into the stream.
_PIX_FMT = "yuv420p"
_COLORSPACE_SMPTE170M, _RANGE_TV = 6, 1
_TIMES_KEPT = 4096  # frame timestamps remembered for the writer (the pipeline holds ~10 frames)
# Containers by file suffix (the temporary file's name keeps it); MP4/MOV get the index in front.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


def encoder_available(codec: str) -> bool:
    """Whether this FFmpeg build can encode ``codec`` (``h264``, ``hevc``, ``mp4v``)."""
    name = CODECS.get(codec, (codec, None))[0]
    try:
        av.codec.Codec(name, "w")
    except (av.FFmpegError, ValueError):
        return False
    return True


def codec_problem(codec: str, crf: int | None) -> str | None:
    """A one-line usage problem with ``--codec`` / ``--crf``, or None."""
    if codec not in CODECS:
        return f"--codec {codec}: choose from {', '.join(CODECS)}"
    if not encoder_available(codec):
        return (f"--codec {codec}: this FFmpeg build has no {CODECS[codec][0]} encoder "
                f"(use {' or '.join(c for c in CODECS if c != codec and encoder_available(c))})")
    if crf is not None and codec not in DEFAULT_CRF:
        return f"--crf applies to h264 and hevc; {codec} uses a fixed quantiser"
    if crf is not None and not 0 <= crf <= 51:
        return f"--crf {crf}: use 0 (lossless) .. 51"
    return None


def as_rate(fps: float | Fraction) -> Fraction:
    """A frame rate as an exact fraction (29.97002997 -> 30000/1001)."""
    if isinstance(fps, Fraction):
        return fps
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps}")
    return Fraction(fps).limit_denominator(1001 * 1000)


class AvVideoReader:
    """Frames of a video file as ``(index, frame_bgr_u8)``, with their timestamps.

    The interface of ``io.video.VideoReader`` (``size``, ``fps``, ``frame_count``, ``seek``,
    ``truncated``/``error``, ...), plus: ``rate`` (exact average frame rate), ``time_base``,
    ``time_of(index)`` (a yielded frame's time in seconds on the source's clock, as a Fraction)
    and ``audio`` (the sound track, or None). Frames whose size changes midway are scaled to
    the first frame's size, as OpenCV does.
    """

    live = False

    def __init__(self, source: str | Path) -> None:
        path = str(source)
        self.label = path
        if not os.path.exists(path):
            raise VideoOpenError("no such file")
        if os.path.isdir(path):
            raise VideoOpenError("is a directory, not a video")
        try:
            container = av.open(path, metadata_errors="ignore")
        except av.error.PermissionError:
            raise VideoOpenError("permission denied") from None
        except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError):
            raise VideoOpenError(CANNOT_OPEN) from None
        self._container = container
        streams = container.streams.video
        if not streams:
            container.close()
            raise VideoOpenError(CANNOT_OPEN)
        stream = streams[0]
        stream.thread_type = "AUTO"  # frame + slice threads: decoding keeps up with the model
        self._stream = stream
        self.time_base: Fraction | None = stream.time_base
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.rate: Fraction = rate if rate and 0 < rate <= 1000 else Fraction(DEFAULT_FPS)
        self.fps: float = float(self.rate)
        self.frame_count: int | None = self._count()
        self.audio: AudioTrack | None = find_audio(container, path)
        self._times: OrderedDict[int, Fraction] = OrderedDict()
        self._t_first: Fraction | None = None
        self._by_time = False  # after a seek, indices come from timestamps (as OpenCV's do)
        self._decoded: Iterator = self._decode()
        self.truncated = False
        self.error: str | None = None
        self._next_index = 0
        self.frames_read = 0
        first = self._read()
        if first is None:
            self.close()
            raise VideoOpenError(NO_FRAME if not self.truncated else CANNOT_OPEN)
        self.size: tuple[int, int] = (first[1].shape[1], first[1].shape[0])
        self._pending: tuple[Fraction | None, np.ndarray] | None = first

    def _count(self) -> int | None:
        """The container's frame count, or an estimate from the duration (MKV/WebM list none)."""
        s = self._stream
        if s.frames and s.frames > 0:
            return int(s.frames)
        seconds = None
        if s.duration and s.time_base:
            seconds = s.duration * s.time_base
        elif self._container.duration:
            seconds = Fraction(self._container.duration, av.time_base)
        if seconds:
            return max(1, round(seconds * self.rate))
        return None

    def _decode(self) -> Iterator:
        for packet in self._container.demux(self._stream):
            yield from packet.decode()

    def _read(self) -> tuple[Fraction | None, np.ndarray] | None:
        """The next decoded frame as (time, BGR array); None at the end or on a decode error."""
        try:
            frame = next(self._decoded, None)
        except (av.FFmpegError, OSError, ValueError, MemoryError):
            self._mark_broken()
            return None
        if frame is None:
            return None
        t = frame.pts * self.time_base if frame.pts is not None and self.time_base else None
        size = getattr(self, "size", None)
        rotation = int(round((getattr(frame, "rotation", 0) or 0) / 90)) % 4  # PyAV >= 14.x has it
        target = size if not rotation % 2 or size is None else (size[1], size[0])
        if target is None or (frame.width, frame.height) == target:
            image = frame.to_ndarray(format="bgr24")
        else:  # the size changed midway: scale to the first, as OpenCV's capture does
            image = frame.reformat(width=target[0], height=target[1], format="bgr24",
                                   interpolation="BICUBIC").to_ndarray()
        if rotation:  # the display matrix of phone videos; OpenCV applies it too
            image = np.ascontiguousarray(np.rot90(image, rotation))
        return t, image

    def _mark_broken(self) -> None:
        self.truncated = True
        self.error = decode_error(self.frame_count)

    def _index_for(self, t: Fraction | None) -> int:
        if self._by_time and t is not None and self._t_first is not None:
            return max(self._next_index, round((t - self._t_first) * self.rate))
        return self._next_index

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        while True:
            item = self._pending if self._pending is not None else self._read()
            self._pending = None
            if item is None:
                self._note_end()
                return
            t, image = item
            if self._t_first is None:
                self._t_first = t
            index = self._index_for(t)
            self._remember(index, t)
            self._next_index = index + 1
            self.frames_read += 1
            yield index, image

    def _remember(self, index: int, t: Fraction | None) -> None:
        if t is None:  # no timestamp (some raw streams): the frame's place at the average rate
            t = (self._t_first or 0) + Fraction(index) / self.rate
        self._times[index] = t
        while len(self._times) > _TIMES_KEPT:
            self._times.popitem(last=False)

    def time_of(self, index: int) -> Fraction | None:
        """Presentation time (seconds, source clock) of the yielded frame ``index``."""
        return self._times.get(index)

    def _note_end(self) -> None:
        """A decode error was seen, or the file ended short of the frames its container lists
        (beyond 1%: some containers only estimate the count)."""
        if not self.truncated and ended_short(self.frame_count, self._next_index):
            self._mark_broken()

    @property
    def position(self) -> int:
        return self._next_index

    def seek(self, frame_index: int) -> bool:
        """Continue from ``frame_index``: seek to the key frame before it, then decode up to it.
        Indices after a seek come from timestamps and the average rate (exact for constant
        rate; OpenCV numbers frames the same way)."""
        if frame_index < 0:
            raise ValueError("frame index must be >= 0")
        if frame_index == self._next_index:
            return True
        t_first = self._t_first if self._t_first is not None else Fraction(0)
        target = t_first + Fraction(frame_index) / self.rate
        try:
            self._container.seek(math.floor(target / self.time_base), stream=self._stream, backward=True)
        except (av.FFmpegError, OSError, ValueError, TypeError, ZeroDivisionError):
            return False
        self._decoded = self._decode()
        self._pending = None
        self._by_time = True
        self.truncated, self.error = False, None
        while True:
            item = self._read()
            if item is None:
                self._next_index = frame_index
                return not self.truncated
            t, _ = item
            index = frame_index if t is None else round((t - t_first) * self.rate)
            if index >= frame_index:
                self._pending = item
                self._next_index = frame_index
                return True

    def close(self) -> None:
        with contextlib.suppress(av.FFmpegError, OSError):
            self._container.close()

    def __enter__(self) -> AvVideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AvVideoWriter:
    """Frames (and optionally the source's sound) to an MP4 file, via a hidden temporary file
    renamed into place by ``close()``.

    ``write(frame, time)``: ``time`` is the frame's presentation time on the *source's* clock
    (seconds, Fraction; None: the next slot at ``fps``); the output starts at the first frame's
    time, in ``time_base`` units (the source's, so timestamps are copied exactly). As a context
    manager it closes on every exit, Ctrl-C included: what was written is finalised into a
    playable file. ``notes`` lists what the caller may want to tell the user (an odd size padded,
    sound that could not be carried over).
    """

    def __init__(self, final_path: str | Path, fps: float | Fraction, size: tuple[int, int], *,
                 codec: str = "h264", crf: int | None = None, time_base: Fraction | None = None,
                 audio: AudioTrack | None = None) -> None:
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {tuple(CODECS)}, got {codec!r}")
        self.rate = as_rate(fps)
        self.final_path = Path(final_path)
        self.size = (int(size[0]), int(size[1]))
        if self.size[0] <= 0 or self.size[1] <= 0:
            raise ValueError(f"invalid frame size {size}")
        self.codec = codec
        self.notes: list[str] = []
        self.frames_written = 0
        self._done = False
        w, h = self.size
        self._coded = (w + w % 2, h + h % 2) if codec != "mp4v" else (w, h)
        if self._coded != self.size:
            self.notes.append(f"{codec} needs even sides: {w}x{h} padded to {self._coded[0]}x{self._coded[1]} "
                              "(edge pixels repeated right/bottom; --codec mp4v keeps the exact size)")
        self.time_base = self._pick_time_base(time_base)
        ensure_parent(self.final_path)
        self._tmp = temp_path_for(self.final_path)
        self._audio: AudioMuxer | None = None
        self._t0: Fraction | None = None
        self._last_time: Fraction | None = None
        self._last_pts: int | None = None
        try:  # FFmpeg opens the file only at the first frame: find a read-only folder now
            with open(self._tmp, "xb"):
                pass
        except PermissionError:
            raise OutputError(f"cannot write video {self.final_path}: permission denied") from None
        except OSError as e:
            raise OutputError(f"cannot write video {self.final_path}: {_os_reason(e)}") from None
        try:
            fmt = CONTAINERS.get(self.final_path.suffix.lower(), "mp4")
            options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
            self._container = av.open(str(self._tmp), "w", format=fmt, options=options)
        except av.error.PermissionError:
            self._remove_tmp()
            raise OutputError(f"cannot write video {self.final_path}: permission denied") from None
        except (av.FFmpegError, OSError) as e:
            self._remove_tmp()
            raise OutputError(f"cannot write video {self.final_path}: {_os_reason(e)}") from None
        try:
            self._stream = self._add_video_stream(crf)
            if audio is not None:
                self._add_audio(audio)
        except (av.FFmpegError, OSError, ValueError) as e:
            self._close_quietly()
            self._remove_tmp()
            raise OutputError(f"cannot write video {self.final_path}: cannot start the {codec} encoder "
                              f"({_os_reason(e)})") from None

    def _pick_time_base(self, time_base: Fraction | None) -> Fraction:
        """The source's time base, so timestamps copy exactly. MPEG-4 Part 2 cannot count in
        more than 65535 ticks a second: there the nearest coarser clock that divides the
        source's (1/90000 -> 1/45000), so each frame moves by under a tick and nothing drifts."""
        tb = time_base if time_base else 1 / self.rate
        if self.codec == "mp4v" and tb.denominator > _MPEG4_MAX_TB_DEN:
            den = tb.denominator
            k = next((k for k in range(-(-den // _MPEG4_MAX_TB_DEN), den + 1) if den % k == 0), den)
            tb = Fraction(tb.numerator, den // k) if den // k <= _MPEG4_MAX_TB_DEN else Fraction(1, _MPEG4_MAX_TB_DEN)
        return tb

    def _add_video_stream(self, crf: int | None):  # noqa: ANN202 - av VideoStream
        encoder, tag = CODECS[self.codec]
        stream = self._container.add_stream(encoder, rate=self.rate)
        stream.width, stream.height = self._coded
        stream.pix_fmt = _PIX_FMT
        stream.time_base = self.time_base
        ctx = stream.codec_context
        ctx.time_base = self.time_base
        ctx.colorspace, ctx.color_range = _COLORSPACE_SMPTE170M, _RANGE_TV
        if tag:
            ctx.codec_tag = tag
        if self.codec == "h264":
            ctx.options = {"crf": str(DEFAULT_CRF["h264"] if crf is None else crf)}
        elif self.codec == "hevc":  # x265 prints its own banner unless told not to
            ctx.options = {"crf": str(DEFAULT_CRF["hevc"] if crf is None else crf), "x265-params": "log-level=none"}
        else:
            ctx.qscale = MP4V_QSCALE
        return stream

    def _add_audio(self, track: AudioTrack) -> None:
        try:
            self._audio = AudioMuxer(track, self._container)
        except AudioError as e:
            self.notes.append(f"the sound is left out: {e}")
            return
        if not self._audio.copy:
            self.notes.append(f"sound: {track.codec} cannot go into MP4 as it is; re-encoded as AAC")

    def write(self, frame: np.ndarray, time: Fraction | None = None) -> None:
        """Append one frame; gray, BGRA or 16-bit frames are converted and other sizes resized."""
        if self._done:
            raise ValueError("write() after close()")
        image = to_bgr8(frame)
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        if self._coded != self.size:
            image = cv2.copyMakeBorder(image, 0, self._coded[1] - self.size[1], 0, self._coded[0] - self.size[0],
                                       cv2.BORDER_REPLICATE)
        if time is None:
            time = (self._last_time + 1 / self.rate) if self._last_time is not None else Fraction(0)
        try:
            if self._t0 is None:
                self._t0 = time
                if self._audio is not None:
                    self._audio.start(time)
            pts = round((time - self._t0) / self.time_base)
            if self._last_pts is not None and pts <= self._last_pts:
                pts = self._last_pts + 1  # timestamps must increase; a broken source's may not
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            vf = vf.reformat(format=_PIX_FMT)
            vf.pts, vf.time_base = pts, self.time_base
            self._mux(self._stream.encode(vf))
            self._last_pts, self._last_time = pts, time
            self.frames_written += 1
            if self._audio is not None:
                self._audio.feed(self._t0 + pts * self.time_base)
        except (av.FFmpegError, OSError) as e:
            self._fail(e)

    def _mux(self, packets: list) -> None:
        for packet in packets:
            self._container.mux(packet)

    def _fail(self, exc: BaseException) -> None:
        """A write failed (full disk, file size limit): nothing playable can come of it."""
        self._done = True
        self._close_quietly()
        self._remove_tmp()
        raise OutputError(f"cannot write video {self.final_path}: {_incomplete(exc)}") from None

    def close(self) -> bool:
        """Flush the encoder, add the rest of the sound, finish the file and move it into place;
        True if a video was written. With no frame written nothing is left behind (False)."""
        if self._done:
            return self.final_path.exists() and self.frames_written > 0
        self._done = True
        problem = None
        try:
            if self.frames_written:
                self._mux(self._stream.encode(None))
                if self._audio is not None:
                    end = self._t0 + (self._last_pts * self.time_base) + 1 / self.rate
                    self._audio.finish(end)
            self._container.close()
        except (av.FFmpegError, OSError) as e:
            problem = _incomplete(e)
            self._close_quietly()
        if self._audio is not None:
            self._audio.close()
            if self._audio.problem:
                self.notes.append(self._audio.problem)
        return commit_video(self._tmp, self.final_path, self.frames_written,
                            lambda: problem or self._check_written())

    def _check_written(self) -> str | None:
        """Read the file back: every frame's packet must be there (a write error can surface
        only as a short file)."""
        try:
            with av.open(str(self._tmp), metadata_errors="ignore") as c:
                stream = c.streams.video[0]
                packets = sum(1 for p in c.demux(stream) if p.size)
        except (av.FFmpegError, OSError, IndexError):
            packets = -1
        if packets == self.frames_written:
            return None
        return _incomplete(None)

    def discard(self) -> None:
        """Stop and delete the temporary file; the final path is not touched."""
        if not self._done:
            self._done = True
            self._close_quietly()
        self._remove_tmp()

    def _close_quietly(self) -> None:
        if self._audio is not None:
            self._audio.close()
        with contextlib.suppress(Exception):
            self._container.close()

    def _remove_tmp(self) -> None:
        with contextlib.suppress(OSError):
            self._tmp.unlink()

    def __enter__(self) -> AvVideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # keep the frames written so far, but never mask the original exception
            self.close()
        except Exception:  # noqa: BLE001
            self.discard()


def _os_reason(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    name = errno.errorcode.get(code) if isinstance(code, int) else None
    return f"{text} ({name})" if name else text


def _incomplete(exc: BaseException | None) -> str:
    """The one reason a video write fails in practice, with the OS's word for it when known."""
    generic = "the file is incomplete (no space left on the device, or over a file size limit)"
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code in errno.errorcode:
        return f"the file is incomplete: {os.strerror(code)} ({errno.errorcode[code]})"
    return generic
