"""``depthcli video``: depth videos with stable colours, decoding/inference/encoding overlapped."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from . import exit_codes
from .errors import CliError
from .options import load_predictor, model_options, with_handled_errors
from .signals import terminate_as_interrupt

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
        raise click.BadParameter(f"{text!r}: use a frame number (120), seconds (4.5s) or mm:ss(.s)")
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
        if (index - first) % stride:
            continue
        yield index, frame
        taken += 1
        if max_frames is not None and taken >= max_frames:
            return


@click.command("video")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", metavar="DIR", help="Output folder (created). Default: beside each input.")
@click.option("-f", "--format", "fmt", type=click.Choice(["color", "gray"]), default="color", show_default=True)
@click.option("--colormap", default="inferno", show_default=True, metavar="NAME")
@click.option("--invert", is_flag=True, help="Swap near and far.")
@click.option("--side-by-side", is_flag=True, help="Input on the left, depth on the right (twice the width).")
@click.option("--normalize", type=click.Choice(["running", "frame"]), default="running", show_default=True,
              help="running: a robust range smoothed over time (no flicker); frame: each frame's own "
                   "min..max, like the original scripts.")
@click.option("--frames", "frames_fmt", type=click.Choice(["gray16", "npy"]), default=None,
              help="Also write every depth frame to <stem>_depth_frames/: 16-bit PNG or raw float32 .npy.")
@click.option("--no-video", is_flag=True, help="With --frames: write only the frames, no video.")
@click.option("--start", metavar="POS", help="First frame: frame number (120), seconds (4.5s) or mm:ss.")
@click.option("--end", metavar="POS", help="Stop before this position (same forms as --start).")
@click.option("--stride", type=click.IntRange(min=1), default=1, show_default=True, help="Keep every Nth frame.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after N output frames.")
@model_options
@click.option("--stats", "stats_path", metavar="FILE", help="Write one JSON object per frame (- = stdout).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@with_handled_errors
def video_command(inputs, output, fmt, colormap, invert, side_by_side, normalize, frames_fmt, no_video, start,
                  end, stride, max_frames, model, model_version, device, precision, size, max_side, stats_path,
                  quiet) -> None:  # noqa: ANN001
    """Depth videos: <stem>_depth.mp4 with the input's frame rate, frame count and size.

    \b
    Examples:
      depthcli video clip.mp4 --fp16
      depthcli video clip.mp4 --side-by-side --start 10s --end 20s -o out/
      depthcli video clip.mp4 --frames npy --no-video      # raw float32 per frame
    Ctrl-C stops cleanly: the video written so far is finalised and playable (exit 130).
    """
    from ..io.render import COLORMAPS

    if colormap not in COLORMAPS:
        raise click.BadParameter(f"unknown colormap {colormap!r}; choose from {', '.join(sorted(COLORMAPS))}",
                                 param_hint="--colormap")
    if no_video and not frames_fmt:
        raise click.UsageError("--no-video needs --frames gray16|npy (otherwise nothing would be written)")
    if output and Path(output).exists() and not Path(output).is_dir():
        raise click.UsageError(f"-o {output}: exists and is not a folder")
    missing = [p for p in inputs if not Path(p).exists() and "://" not in p]
    for p in missing:
        click.echo(f"depthcli: {p}: no such file", err=True)
    todo = [p for p in inputs if p not in missing]
    if not todo:
        sys.exit(exit_codes.INPUT)

    predictor = load_predictor(model=model, model_version=model_version, device=device, precision=precision,
                               size=size, max_side=max_side)
    failed = unopened = len(missing)
    with terminate_as_interrupt():
        for path in todo:
            ok = _one_video(path, predictor, output=output, fmt=fmt, colormap=colormap, invert=invert,
                            side_by_side=side_by_side, normalize=normalize, frames_fmt=frames_fmt,
                            no_video=no_video, start=start, end=end, stride=stride, max_frames=max_frames,
                            stats_path=stats_path, quiet=quiet)
            failed += not ok
            unopened += ok is None
    if failed:  # 5 only when the one input could not be opened/read at all; an output problem is 1
        sys.exit(exit_codes.INPUT if unopened == len(inputs) == 1 else exit_codes.SOME_FAILED)


def _one_video(path: str, predictor, *, output, fmt, colormap, invert, side_by_side, normalize, frames_fmt,  # noqa: ANN001
               no_video, start, end, stride, max_frames, stats_path, quiet) -> bool | None:
    """Process one video; None when it could not be opened, False when it broke midway or its
    output could not be written."""
    from ..io import render as r
    from ..io.video import FrameDirWriter, VideoOpenError, VideoReader, VideoWriter
    from ..io.writers import OutputError
    from ..runtime.streaming import stream_depth
    from .report import Reporter

    src = Path(path)
    out_dir = Path(output) if output else (src.parent if src.exists() else Path.cwd())
    stem = src.stem if src.exists() else re.sub(r"\W+", "_", path).strip("_")[-40:] or "stream"
    try:
        reader = VideoReader(path)
    except VideoOpenError as e:
        click.echo(f"depthcli: {path}: {e}", err=True)
        return None
    fps = reader.fps
    first, stop_at = parse_position(start, fps), parse_position(end, fps)
    if stop_at is not None and stop_at <= (first or 0):
        reader.close()
        raise click.UsageError(f"--end ({end}) must come after --start ({start or 0})")
    w, h = reader.size
    try:
        predictor.check_fits(h, w)
    except MemoryError as e:
        click.echo(f"depthcli: {path}: {e}", err=True)
        reader.close()
        return False
    total = reader.frame_count
    if total is not None:
        last = min(total, stop_at) if stop_at is not None else total
        total = max(0, (last - (first or 0) + stride - 1) // stride)
        if max_frames is not None:
            total = min(total, max_frames)
    reporter = Reporter(total=total or 0, unit="frame", quiet=quiet, stats_path=stats_path,
                        bar=None if total else False)
    running = r.RunningRange() if normalize == "running" else None
    video_path = out_dir / f"{stem}_depth.mp4"
    out_size = (2 * w, h) if side_by_side else (w, h)
    try:
        writer = None if no_video else VideoWriter(video_path, fps / stride, out_size)
    except OutputError as e:
        click.echo(f"depthcli: {path}: {e}", err=True)
        reader.close()
        return False
    frame_writer = None
    if frames_fmt:
        kind = "npy" if frames_fmt == "npy" else "png"
        frame_writer = FrameDirWriter(out_dir / f"{stem}_depth_frames", stem, kind)

    def sink(index: int, frame, prediction) -> None:  # noqa: ANN001
        depth = prediction.depth_hw
        if frame_writer is not None:
            frame_writer.write(index, depth)
        if writer is None:
            return
        value_range = running.update(depth) if running is not None else None
        picture = (r.to_gray8(depth, value_range=value_range, invert=invert) if fmt == "gray"
                   else r.to_color(depth, colormap=colormap, value_range=value_range, invert=invert))
        writer.write(r.side_by_side(frame, picture) if side_by_side else picture)

    reporter.info(f"{path}: {w}x{h}, {fps:.3g} fps, {reader.frame_count or 'unknown'} frames -> "
                  f"{video_path if writer else frame_writer.directory}")
    interrupted, result, write_error, closed = False, None, None, True
    try:
        result = stream_depth(frame_range(reader, first, stop_at, stride, max_frames), predictor, sink,
                              on_frame=reporter.done)
    except KeyboardInterrupt:
        interrupted = True
    except OutputError as e:
        write_error = e
    finally:
        try:  # finalise what was written (a playable file), on success, error and interrupt alike
            if writer is not None:
                writer.close()
        except OutputError as e:  # e.g. the disk filled up: the encoder's output is incomplete
            click.echo(f"depthcli: {path}: {e}", err=True)
            closed = False
    if write_error is not None:
        click.echo(f"depthcli: {path}: {write_error}", err=True)
        return False
    if interrupted:
        n = len(reporter.summary.frames)
        reporter.close()
        kept = f"{video_path if writer else 'frames'} finalised and kept" if closed else "the video was not kept"
        raise CliError(f"interrupted after {n} frames; {kept}", exit_codes.INTERRUPTED)
    if not closed:
        reporter.close()
        return False
    reporter.close()
    if result is not None and not result.frames and not (reader.error or result.source_error):
        click.echo(f"depthcli: {path}: no frames selected (it has {reader.frame_count or 'no'} frames; "
                   f"check --start/--end)", err=True)
        return False
    if not quiet and result is not None and result.frames:
        click.echo(f"{path}: model-only {result.model_fps:.2f} fps, end-to-end {result.end_to_end_fps:.2f} fps "
                   f"({result.frames} frames in {result.wall_s:.1f} s)", err=True)
    if reader.error or (result is not None and result.source_error):
        err = reader.error or result.source_error
        click.echo(f"depthcli: {path}: stopped after {result.frames if result else 0} frames: {err}", err=True)
        return False
    return True
