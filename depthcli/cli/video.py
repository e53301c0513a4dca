"""``depthcli video``: depth videos with stable colours, decoding/inference/encoding overlapped."""
from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import click

from . import exit_codes, signals
from .errors import interrupted_error
from .options import (
    cluster_error,
    given,
    load_predictor,
    model_options,
    refuse_unused,
    require_ray_installed,
    say_licence,
    with_handled_errors,
)


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
@click.option("--frames", "frames_fmt", type=click.Choice(["gray16", "npy", "exr"]), default=None,
              help="Also write every depth frame to <stem>_depth_frames/: 16-bit PNG, raw float32 .npy or "
                   "float32 EXR (channel Z). How everything was made goes to <stem>_depth.json.")
@click.option("--no-video", is_flag=True, help="With --frames: write only the frames, no video.")
@click.option("--start", metavar="POS", help="First frame: frame number (120), seconds (4.5s) or mm:ss.")
@click.option("--end", metavar="POS", help="Stop before this position (same forms as --start).")
@click.option("--stride", type=click.IntRange(min=1), default=1, show_default=True, help="Keep every Nth frame.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after N output frames.")
@click.option("--codec", type=click.Choice(["h264", "hevc", "mp4v"]), default="h264", show_default=True,
              help="Video codec of the MP4: h264 (yuv420p, plays everywhere), hevc (smaller; if this FFmpeg "
                   "has libx265), mp4v (MPEG-4 Part 2, the old default).")
@click.option("--crf", type=click.IntRange(min=0, max=51), default=None,
              help="h264/hevc quality: lower is better and bigger (default 18 for h264, 20 for hevc).")
@click.option("--no-audio", is_flag=True, help="Leave the source's sound out (it is kept by default).")
@click.option("--fps", "seq_fps", metavar="RATE", default=None,
              help="Frame rate of image-sequence inputs (a folder, frame_%05d.png or a quoted glob): "
                   "24, 23.976 or 24000/1001. Default 24. Videos keep their own timing.")
@click.option("--temporal", type=click.Choice(["window", "stream"]), default=None,
              help="Video models (Video Depth Anything, vda-*): window = the original's overlapping 32-frame "
                   "windows, aligned (each frame final about one window later); stream = one frame at a time "
                   "against cached states of earlier frames. Default: window for files, stream for live sources.")
@model_options
@click.option("--stats", "stats_path", metavar="FILE", help="Write one JSON object per frame (- = stdout).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.option("--ray", "ray_address", metavar="ADDRESS", default=None,
              help="Run on a Ray cluster, one task per video: host:port, ray://host:port, auto, or local "
                   "(start Ray here). Needs pip install 'depthcli[ray]'.")
@with_handled_errors
def video_command(inputs, output, fmt, colormap, invert, side_by_side, normalize, frames_fmt, no_video, start,
                  end, stride, max_frames, codec, crf, no_audio, seq_fps, temporal, spec, stats_path,
                  quiet, ray_address) -> None:  # noqa: ANN001
    """Depth videos: <stem>_depth.mp4 with the input's frame rate, frame count and size.

    \b
    Examples:
      depthcli video clip.mp4 --fp16
      depthcli video clip.mp4 --side-by-side --start 10s --end 20s -o out/
      depthcli video clip.mp4 --frames npy --no-video      # raw float32 per frame
      depthcli video shots/ --fps 25                       # an image sequence -> shots_depth.mp4
    H.264 MP4 with the source's sound and timestamps (variable frame rate too).
    Ctrl-C stops cleanly: the video written so far is finalised and playable (exit 130).
    """
    from ..io.render import COLORMAPS

    if colormap not in COLORMAPS:
        raise click.BadParameter(f"unknown colormap {colormap!r}; choose from {', '.join(sorted(COLORMAPS))}",
                                 param_hint="--colormap")
    if no_video and not frames_fmt:
        raise click.UsageError("--no-video needs --frames gray16|npy|exr (otherwise nothing would be written)")
    _refuse_options_that_cannot_apply(fmt, no_video)
    if output and Path(output).exists() and not Path(output).is_dir():
        raise click.UsageError(f"-o {output}: exists and is not a folder")
    from ..io.video.sequence import is_sequence, parse_rate

    if not no_video:
        from ..io.video.pyav import codec_problem

        problem = codec_problem(codec, crf)
        if problem:
            raise click.UsageError(problem)
    if seq_fps is not None:
        try:
            parse_rate(seq_fps)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--fps") from None
    missing = [p for p in inputs if not Path(p).exists() and "://" not in p and not is_sequence(p)]
    if seq_fps is not None:
        _check_fps_applies(inputs, missing, quiet)
    for p in missing:
        click.echo(f"depthcli: {p}: no such file", err=True)
    todo = _once_each([p for p in inputs if p not in missing])
    if not todo:
        sys.exit(exit_codes.INPUT)

    from ..jobs.naming import NameClash
    from ..jobs.video import VideoInterrupted, VideoOptions, VideoUsageError, output_stems, run_video

    try:
        stems = output_stems(todo, output)  # before anything runs: a clash is refused, not half done
    except NameClash as e:
        raise click.UsageError(str(e)) from None
    from .report import Reporter

    opts = VideoOptions(output=output, fmt=fmt, colormap=colormap, invert=invert, side_by_side=side_by_side,
                        normalize=normalize, frames_fmt=frames_fmt, no_video=no_video, start=start, end=end,
                        stride=stride, max_frames=max_frames, codec=codec, crf=crf, audio=not no_audio,
                        fps=seq_fps, temporal=temporal)

    def new_reporter(total: int | None) -> Reporter:
        return Reporter(total=total or 0, unit="frame", quiet=quiet, stats_path=stats_path,
                        bar=None if total else False)

    def error(line: str) -> None:
        click.echo(line, err=True)

    if ray_address is not None:
        require_ray_installed()
        say_licence(spec)
    else:
        predictor = load_predictor(spec)
        from ..jobs.metadata import model_facts

        facts = model_facts(predictor, spec)
    failed = unopened = len(missing)
    if ray_address is not None:  # one Ray task per video instead of the loop below
        statuses = _run_on_ray(ray_address, todo, spec, opts, new_reporter=new_reporter, error=error)
        failed += sum(not ok for ok in statuses)
        unopened += sum(ok is None for ok in statuses)
        todo = []
    for path in todo:
        try:
            ok = run_video(path, predictor, replace(opts, stem=stems[path]), new_reporter=new_reporter,
                           error=error, facts=facts)
        except VideoUsageError as e:
            raise click.UsageError(str(e)) from None
        except VideoInterrupted as e:
            raise interrupted_error(str(e)) from None
        failed += not ok
        unopened += ok is None
    signals.work_done()  # every video is finalised: a signal from here on changes nothing
    if failed:  # 5 only when the one input could not be opened/read at all; an output problem is 1
        sys.exit(exit_codes.INPUT if unopened == len(inputs) == 1 else exit_codes.SOME_FAILED)


def _run_on_ray(address: str, paths: list[str], spec, opts, **callbacks) -> list:  # noqa: ANN001
    """One Ray task per video (depthcli/cluster/ray_videos.py); the same lines and exit codes."""
    from ..cluster import ClusterFailure, run_videos
    from ..jobs.video import VideoUsageError

    try:
        return run_videos(address, paths, spec, opts, **callbacks)
    except VideoUsageError as e:
        raise click.UsageError(str(e)) from None
    except ClusterFailure as e:
        raise cluster_error(e) from None


def _refuse_options_that_cannot_apply(fmt: str, no_video: bool) -> None:
    """Options that would silently do nothing: a usage error (exit 2) naming them."""
    if fmt != "color":
        refuse_unused(["--colormap"] if given("colormap") else [], "to --format color")
    if no_video:
        video_only = [flag for flag, name in (("--format", "fmt"), ("--colormap", "colormap"), ("--invert", "invert"),
                                              ("--side-by-side", "side_by_side"), ("--normalize", "normalize"),
                                              ("--codec", "codec"), ("--crf", "crf"), ("--no-audio", "no_audio"))
                      if given(name)]
        refuse_unused(video_only, "to the video, which --no-video leaves out (the frames are raw or gray16)")


def _check_fps_applies(inputs: tuple[str, ...], missing: list[str], quiet: bool) -> None:
    """--fps times image sequences; a video keeps its own timing. Refused when no input is a
    sequence, said once when only some are."""
    from ..io.video.sequence import is_sequence

    videos = [p for p in inputs if p not in missing and not is_sequence(p)]
    if videos and len(videos) == len(inputs) - len(missing):
        raise click.UsageError(f"--fps sets the frame rate of image sequences; {videos[0]} is a video, which "
                               f"keeps its own timing")
    if videos and not quiet:
        click.echo(f"depthcli: note: --fps applies to the image sequences only; {', '.join(videos[:3])} "
                   f"keep{'s' if len(videos) == 1 else ''} {'its' if len(videos) == 1 else 'their'} own timing",
                   err=True)


def _once_each(paths: list[str]) -> list[str]:
    """The same video named twice (``a.mp4 ./a.mp4``) is run once, not written twice."""
    seen: set[str] = set()
    out = []
    for p in paths:
        key = os.path.realpath(p) if Path(p).exists() else p
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
