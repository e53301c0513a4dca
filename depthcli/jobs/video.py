"""One video in, its depth video (and/or depth frames) out, as ``depthcli video`` does it.

Decoding, inference and rendering + encoding overlap (``runtime.streaming``); an interrupt or a
decode error midway still leaves a finalised, playable file of the frames done. Plain functions
with callbacks for what is shown, so the CLI and cluster tasks run the same code.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io import render as r
from ..io.formats.metadata import sidecar_bytes
from ..io.inputs import is_object_uri
from ..io.video.opencv import FrameDirWriter, VideoOpenError, open_video
from ..io.video.pyav import AvVideoWriter, as_rate
from ..io.video.sequence import is_sequence, sequence_output
from ..io.writers import OutputError, signals_held, write_bytes
from ..runtime.streaming import stream_depth
from . import naming


class VideoUsageError(ValueError):
    """--start/--end that cannot be honoured (a usage error: exit 2 in the CLI)."""


class VideoInterrupted(Exception):
    """Ctrl-C/SIGTERM during a video; the message says what was finalised and kept."""


@dataclass(frozen=True)
class VideoOptions:
    """How a video's depth is rendered and written (everything but the model)."""

    output: str | None = None  # folder; None: beside the input
    fmt: str = "color"  # color | gray
    colormap: str = "inferno"
    invert: bool = False
    side_by_side: bool = False
    normalize: str = "running"  # running | frame
    frames_fmt: str | None = None  # gray16 | npy | exr: also write every depth frame
    no_video: bool = False
    start: str | None = None
    end: str | None = None
    stride: int = 1
    max_frames: int | None = None
    codec: str = "h264"  # h264 | hevc | mp4v (io.video.pyav.CODECS)
    crf: int | None = None  # None: io.video.pyav.DEFAULT_CRF
    audio: bool = True  # carry the source's sound over (copied, or re-encoded as AAC)
    fps: str | None = None  # image sequences only: their frame rate (default 24)
    temporal: str | None = None  # clip models: window | stream; None: window for files, stream for live sources
    stem: str | None = None  # what the outputs are named after (<stem>_depth.mp4); None: the input


def output_place(path: str, output: str | None) -> tuple[Path, naming.NameSource]:
    """The folder a video's outputs go to and what they are named after: a file's stem, beside it
    or in ``output``; an image sequence's name (``io.video.sequence.sequence_output``); a stream's
    address, made a name (``rtsp://cam/1`` -> ``rtsp_cam_1``), in ``output`` or here."""
    src = Path(path)
    if is_sequence(path):  # a folder, frame_%05d.png or a glob: outputs named after it
        seq_dir, stem = sequence_output(path)
        out_dir = Path(output) if output else seq_dir
        return out_dir, naming.source_for(out_dir, seq_dir / stem, has_suffix=False)
    if src.exists() or is_object_uri(path):  # a file (an object store's too: --ray fetches it first)
        out_dir = Path(output) if output else src.parent
        return out_dir, naming.source_for(out_dir, src)
    out_dir = Path(output) if output else Path.cwd()
    stream = re.sub(r"\W+", "_", path).strip("_")[-40:] or "stream"
    return out_dir, naming.source_for(out_dir, None, name=stream, has_suffix=False)


def output_stems(paths: list[str], output: str | None) -> dict[str, str]:
    """The stem every video's outputs are named after (``jobs.naming``): its own, unless another
    video's outputs (or an input of the run) would take the same names in the same folder
    (``a.mp4`` and ``a.mkv`` -> ``a_mp4_depth.mp4``, ``a_mkv_depth.mp4``; ``x/a.mp4`` and
    ``y/a.mp4`` with ``-o out/`` -> ``x_a_mp4_depth.mp4``, ``y_a_mp4_depth.mp4``). Raises
    ``naming.NameClash`` when nothing tells two apart."""
    unique = list(dict.fromkeys(paths))
    sources = [output_place(p, output)[1] for p in unique]
    reserved = naming.reserved_by_inputs([p for p in unique if Path(p).is_file()], ["mp4"])
    return dict(zip(unique, naming.distinct_stems(sources, reserved), strict=True))


class VideoRecord:
    """What ``<stem>_depth.json`` says about one video's outputs, gathered while it runs: the
    model facts, the sizes, how the video was coloured (the (min, max) each frame was mapped
    with: its own, or the running range) and how the ``--frames`` files are normalised."""

    def __init__(self, facts: dict | None, opts: VideoOptions, name: str, fps: float,
                 input_hw: tuple[int, int]) -> None:
        self.facts, self.opts, self.name, self.fps, self.input_hw = facts or {}, opts, name, fps, input_hw
        self.network_hw: list[int] | None = None
        self.ranges: list[list[float]] = []  # [frame index, min, max] per video frame
        self.temporal: str | None = None  # a clip model's mode (window, stream)

    def add_range(self, index: int, depth, value_range: tuple[float, float] | None) -> None:  # noqa: ANN001
        from .metadata import value_range as own_range

        lo_hi = value_range if value_range is not None else own_range(depth)
        if lo_hi is not None:
            self.ranges.append([index, float(np.float32(lo_hi[0])), float(np.float32(lo_hi[1]))])

    def frame_meta(self, index: int, depth) -> dict | None:  # noqa: ANN001
        """The metadata embedded in one ``--frames`` file (none for npy: the sidecar says it)."""
        from .metadata import value_metadata

        fmt = self.opts.frames_fmt
        if fmt == "npy":
            return None
        meta = {**self.facts, "format": fmt, "input": self.name, "frame": index, "input_hw": list(self.input_hw),
                "network_hw": self.network_hw}
        meta.update(value_metadata(depth, fmt))
        return meta

    def to_dict(self, video_name: str | None, frames_dir: str | None) -> dict:
        from .metadata import LEVELS, picture_invert

        opts = self.opts
        meta = {**self.facts, "format": "video", "input": self.name, "input_hw": list(self.input_hw),
                "network_hw": self.network_hw, "fps": self.fps, "start": opts.start, "end": opts.end,
                "stride": opts.stride}
        if self.temporal is not None:
            meta["temporal"] = self.temporal
        if video_name is not None:
            inv = picture_invert(opts.invert, self.facts)
            meta["video"] = {
                "file": video_name, "format": opts.fmt, "fps": self.fps / opts.stride,
                "colormap": opts.colormap if opts.fmt == "color" else None, "invert": inv,
                "side_by_side": opts.side_by_side, "normalize": opts.normalize, "levels": LEVELS[opts.fmt],
                "formula": ("value = max - (max - min) * p / 255" if inv else "value = min + (max - min) * p / 255")
                + " with the frame's min, max from frame_ranges (8-bit, lossy video: approximate"
                + ("; values outside the running range are clipped)" if opts.normalize == "running" else ")"),
                "frame_ranges": {"columns": ["frame", "min", "max"], "rows": self.ranges},
            }
        if frames_dir is not None:
            meta["frames"] = {
                "folder": frames_dir, "format": opts.frames_fmt,
                "normalisation": {"gray16": "each PNG its own min..max, recorded in its depthcli text chunk",
                                  "npy": "none: raw float32 model output",
                                  "exr": "none: raw float32 model output (channel Z)"}[opts.frames_fmt],
            }
        return meta


_TIME = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d*)?)s?$")


def parse_position(text: str | None, fps: float) -> int | None:
    """A frame index from ``120`` (frame number), ``4.5s`` / ``4.5`` (seconds) or ``01:02.5``
    (minutes:seconds, hours:minutes:seconds)."""
    if text is None:
        return None
    t = text.strip()
    if re.fullmatch(r"\d+", t):
        return int(t)
    m = _TIME.match(t)
    if not m:
        raise VideoUsageError(f"{text!r}: use a frame number (120), seconds (4.5s) or mm:ss(.s)")
    parts = [p for p in m.groups() if p is not None]
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + float(p)
    return int(round(seconds * fps))


def frame_range(reader, start: int | None, end: int | None, stride: int, max_frames: int | None):  # noqa: ANN001, ANN201
    """Yield (index, frame) for the selected frames; ``end`` is exclusive."""
    first = start or 0
    if first:
        reader.seek(first)
    taken = 0
    for index, frame in reader:
        if end is not None and index >= end:
            return
        if index < first or (index - first) % stride:  # index < first: the source could not seek
            continue
        yield index, frame
        taken += 1
        if max_frames is not None and taken >= max_frames:
            return


def run_video(path: str, predictor, opts: VideoOptions, *, new_reporter: Callable[[int | None], Any],  # noqa: ANN001
              error: Callable[[str], None], facts: dict | None = None) -> bool | None:
    """Depth for one video, written as ``<stem>_depth.mp4`` (and/or frames). True when done, None
    when it could not be opened, False when it broke midway or its output could not be written.

    ``new_reporter(total_frames)`` makes the per-video reporter (``info``, ``done(stats)``,
    ``close()``, ``summary.frames``), ``error(line)`` shows one failure line. Raises
    ``VideoInterrupted`` on Ctrl-C (the output so far finalised) and ``VideoUsageError`` for a
    --start/--end that selects nothing sensible.

    ``facts`` (``jobs.metadata.model_facts``) go into ``<stem>_depth.json`` beside the video,
    with the value range each video frame was coloured with, and into every PNG/EXR frame.
    """
    from .metadata import picture_invert

    output, fmt, colormap, side_by_side = opts.output, opts.fmt, opts.colormap, opts.side_by_side
    invert = picture_invert(opts.invert, facts)  # near bright for every model
    normalize, frames_fmt, no_video, start, end = opts.normalize, opts.frames_fmt, opts.no_video, opts.start, opts.end
    stride, max_frames = opts.stride, opts.max_frames

    if opts.temporal is not None and not predictor.traits.temporal:
        raise VideoUsageError(f"--temporal {opts.temporal} applies to video models (Video Depth Anything, "
                              f"e.g. vda-small); this model estimates each frame alone")
    src = Path(path)
    out_dir, place = output_place(path, output)
    stem = opts.stem or place.stem
    try:
        reader = open_video(path, fps=opts.fps)
    except VideoOpenError as e:
        error(f"depthcli: {path}: {e}")
        return None
    fps = reader.fps
    first, stop_at = parse_position(start, fps), parse_position(end, fps)
    if stop_at is not None and stop_at <= (first or 0):
        reader.close()
        raise VideoUsageError(f"--end ({end}) must come after --start ({start or 0})")
    w, h = reader.size
    try:
        predictor.check_fits(h, w)
    except MemoryError as e:
        error(f"depthcli: {path}: {e}")
        reader.close()
        return False
    total = reader.frame_count
    if total is not None:
        last = min(total, stop_at) if stop_at is not None else total
        total = max(0, (last - (first or 0) + stride - 1) // stride)
        if max_frames is not None:
            total = min(total, max_frames)
    if total == 0:  # --start past the listed end: said before anything is announced or written
        error(f"depthcli: {path}: no frames selected: --start {start} is past the end "
              f"(it lists {reader.frame_count} frames)")
        reader.close()
        return False
    reporter = new_reporter(total)
    running = r.RunningRange() if normalize == "running" else None
    video_path = out_dir / f"{stem}_depth.mp4"
    out_size = (2 * w, h) if side_by_side else (w, h)
    frame_writer = None
    if frames_fmt:
        kind = {"npy": "npy", "exr": "exr"}.get(frames_fmt, "png")
        frame_writer = FrameDirWriter(out_dir / f"{stem}_depth_frames", stem, kind)
    record = VideoRecord(facts, opts, src.name if src.exists() else path, fps, (h, w))
    temporal = None
    if predictor.traits.temporal:
        from ..io.video.opencv import is_url

        temporal = record.temporal = opts.temporal or ("stream" if is_url(path) else "window")
    time_of = getattr(reader, "time_of", None)  # each frame's source timestamp (PyAV, sequences)
    writer = None

    def sink(index: int, frame, prediction) -> None:  # noqa: ANN001
        depth = prediction.depth_hw
        record.network_hw = list(prediction.stats.processed_hw)
        if frame_writer is not None:
            frame_writer.write(index, depth, meta=record.frame_meta(index, depth))
        if writer is None:
            return
        value_range = running.update(depth) if running is not None else None
        record.add_range(index, depth, value_range)
        picture = (r.to_gray8(depth, value_range=value_range, invert=invert) if fmt == "gray"
                   else r.to_color(depth, colormap=colormap, value_range=value_range, invert=invert))
        writer.write(r.side_by_side(frame, picture) if side_by_side else picture,
                     time_of(index) if time_of is not None else None)

    interrupted, result, write_error, closed, sidecar_failed, notes_shown = False, None, None, True, False, 0
    try:
        # The source's timestamps are passed through (time_of), so with --stride the rate is
        # divided and the duration, and the sound's sync, are kept.
        rate = getattr(reader, "rate", None) or as_rate(fps)
        audio = getattr(reader, "audio", None) if opts.audio else None
        with signals_held():  # its temporary file and the encoder come into being whole
            writer = None if no_video else AvVideoWriter(video_path, rate / stride, out_size, codec=opts.codec,
                                                         crf=opts.crf, time_base=getattr(reader, "time_base", None),
                                                         audio=audio)
    except OutputError as e:
        error(f"depthcli: {path}: {e}")
        reader.close()
        return False
    except KeyboardInterrupt:  # held until the writer existed: nothing was written yet, so none is kept
        if writer is not None:
            writer.discard()
        reader.close()
        raise
    # From here the writer's temporary file exists: every way out goes through the finally below.
    try:
        reporter.info(f"{path}: {w}x{h}, {fps:.3g} fps, {reader.frame_count or 'unknown'} frames -> "
                      f"{video_path if writer else frame_writer.directory}")
        if getattr(reader, "left_out", 0):  # an image sequence's folder or glob held depthcli outputs
            reporter.info(f"depthcli: note: {path}: left out {reader.left_out} depthcli output"
                          f"{'s' if reader.left_out != 1 else ''} found among the frames (a %d pattern names "
                          f"frames exactly)")
        notes_shown = len(writer.notes) if writer is not None else 0
        for note in writer.notes if writer is not None else ():
            reporter.info(f"depthcli: note: {path}: {note}")
        result = stream_depth(frame_range(reader, first, stop_at, stride, max_frames), predictor, sink,
                              on_frame=reporter.done, temporal=temporal)
    except KeyboardInterrupt:
        interrupted = True
    except OutputError as e:
        write_error = e
        closed = False  # the writer dropped its file: nothing was finalised
    finally:
        with signals_held():  # a signal now would leave the file unfinished: it waits for the end of this
            status = _finalise(writer, record, out_dir / f"{stem}_depth.json", video_path, frame_writer,
                               reporter, error, path, closed, notes_shown)
            closed, sidecar_failed = status is not False, status is None
    if write_error is not None:
        error(f"depthcli: {path}: {write_error}")
        return False
    if interrupted:
        n = len(reporter.summary.frames)
        reporter.close()
        if not n:
            kept = "nothing was written"
        else:
            kept = f"{video_path if writer else 'frames'} finalised and kept" if closed else "the video was not kept"
        raise VideoInterrupted(f"interrupted after {n} frames; {kept}")
    if not closed or sidecar_failed:
        reporter.close()
        return False
    reporter.close()
    if result is not None and not result.frames and not (reader.error or result.source_error):
        error(f"depthcli: {path}: no frames selected (it has {reader.frame_count or 'no'} frames; "
              f"check --start/--end)")
        return False
    if reader.error or (result is not None and result.source_error):
        err = reader.error or result.source_error
        error(f"depthcli: {path}: stopped after {result.frames if result else 0} frames: {err}")
        return False
    return True


def _finalise(writer, record: VideoRecord, sidecar: Path, video_path: Path, frame_writer, reporter,  # noqa: ANN001
              error: Callable[[str], None], path: str, closed: bool, notes_shown: int) -> bool | None:
    """Finish a video's outputs, on success, error and interrupt alike: the playable file of the
    frames written, then ``<stem>_depth.json`` (how they were made). True when finalised, False
    when the video could not be kept, None when only the sidecar failed. ``notes_shown``: the
    writer's notes already said (the rest, e.g. the sound stopping early, are said here)."""
    try:
        if writer is not None:
            writer.close()
    except OutputError as e:  # e.g. the disk filled up: the encoder's output is incomplete
        error(f"depthcli: {path}: {e}")
        closed = False
    for note in writer.notes[notes_shown:] if writer is not None else ():  # e.g. the sound stopped early
        reporter.info(f"depthcli: note: {path}: {note}")
    if record.network_hw is not None and closed:  # how the frames were made, once per video
        try:
            write_bytes(sidecar, sidecar_bytes(record.to_dict(
                video_path.name if writer else None, frame_writer.directory.name if frame_writer else None)))
        except OutputError as e:
            error(f"depthcli: {path}: {e}")
            return None
    return closed
