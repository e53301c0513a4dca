"""``depthcli video``: depth videos with stable colours, decoding/inference/encoding overlapped."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from . import exit_codes
from .errors import CliError
from .options import load_predictor, model_options, with_handled_errors
from .signals import terminate_as_interrupt


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
                  end, stride, max_frames, spec, stats_path, quiet) -> None:  # noqa: ANN001
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

    from ..jobs.video import VideoInterrupted, VideoOptions, VideoUsageError, run_video
    from .report import Reporter

    opts = VideoOptions(output=output, fmt=fmt, colormap=colormap, invert=invert, side_by_side=side_by_side,
                        normalize=normalize, frames_fmt=frames_fmt, no_video=no_video, start=start, end=end,
                        stride=stride, max_frames=max_frames)

    def new_reporter(total: int | None) -> Reporter:
        return Reporter(total=total or 0, unit="frame", quiet=quiet, stats_path=stats_path,
                        bar=None if total else False)

    def error(line: str) -> None:
        click.echo(line, err=True)

    predictor = load_predictor(spec)
    failed = unopened = len(missing)
    with terminate_as_interrupt():
        for path in todo:
            try:
                ok = run_video(path, predictor, opts, new_reporter=new_reporter, error=error)
            except VideoUsageError as e:
                raise click.UsageError(str(e)) from None
            except VideoInterrupted as e:
                raise CliError(str(e), exit_codes.INTERRUPTED) from None
            failed += not ok
            unopened += ok is None
    if failed:  # 5 only when the one input could not be opened/read at all; an output problem is 1
        sys.exit(exit_codes.INPUT if unopened == len(inputs) == 1 else exit_codes.SOME_FAILED)
