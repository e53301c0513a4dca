"""``depthcli image``: depth maps for photos, folders, globs, lists and stdin."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from . import exit_codes
from .errors import CliError, print_debug_traceback
from .options import load_predictor, model_options, with_handled_errors
from .signals import terminate_as_interrupt

FORMATS = ("color", "gray", "gray16", "npy")  # jobs.image.FORMATS (not imported: --help stays light)


def _colormap_names() -> list[str]:
    from ..io.render import COLORMAPS

    return sorted(COLORMAPS)


@click.command("image")
@click.argument("inputs", nargs=-1, metavar="INPUT...")
@click.option("-r", "--recursive", is_flag=True, help="Descend into subfolders of folder inputs.")
@click.option("--list", "list_file", metavar="FILE", help="Read input paths, one per line, from FILE (- = stdin).")
@click.option("-o", "--output", metavar="DIR|-", help="Output folder (created; subfolders mirrored), or - for stdout. "
              "Default: beside each input.")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="color", show_default=True,
              help="color: colormap PNG; gray: 8-bit PNG; gray16: 16-bit PNG; npy: raw float32 depth "
                   "at the image's resolution (metres for metric models).")
@click.option("--colormap", default="inferno", show_default=True, metavar="NAME",
              help="OpenCV colormap for --format color (inferno, turbo, magma, viridis, ...).")
@click.option("--invert", is_flag=True, help="Swap near and far in PNG outputs.")
@click.option("--side-by-side", is_flag=True, help="Write the input beside its depth (color/gray).")
@model_options
@click.option("--max-pixels", type=click.IntRange(min=0), default=None,
              help="Refuse images with more pixels than this (decompression bombs); 0 disables. "
                   "Default: 178956970.")
@click.option("--skip-existing", is_flag=True, help="Skip inputs whose output already exists (resume a batch).")
@click.option("--stats", "stats_path", metavar="FILE", help="Write one JSON object per image (- = stdout).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and nothing else on stderr.")
@with_handled_errors
def image_command(inputs, recursive, list_file, output, fmt, colormap, invert, side_by_side, spec, max_pixels,
                  skip_existing, stats_path, quiet) -> None:  # noqa: ANN001
    """Depth maps for images: files, folders (-r), quoted globs, --list, or - for stdin.

    \b
    Examples:
      depthcli image photo.jpg                       # photo_depth.png beside it
      depthcli image shots/ -r -o out/               # mirror shots/ under out/
      find . -name '*.jpg' | depthcli image --list - -o out/
      depthcli image - -o - < a.jpg > d.png          # stdin to stdout
      depthcli image a.jpg -f npy -o raw/            # raw float32 depth
    """
    from ..io.images import DEFAULT_MAX_PIXELS
    from ..io.inputs import collect_inputs
    from ..jobs.image import ImageOptions, plan_outputs, run_images

    if not inputs and not list_file:
        raise click.UsageError("give at least one INPUT (file, folder, glob or -) or --list FILE")
    if colormap not in _colormap_names():
        raise click.BadParameter(f"unknown colormap {colormap!r}; choose from {', '.join(_colormap_names())}",
                                 param_hint="--colormap")
    if side_by_side and fmt in ("npy", "gray16"):
        raise click.UsageError("--side-by-side needs --format color or gray")
    if stats_path == "-" and output == "-":
        raise click.UsageError("--stats - and -o - would both write to stdout")
    if "-" in inputs and list_file == "-":
        raise click.UsageError("stdin cannot be both an image (-) and the --list")
    limit = None if max_pixels == 0 else (max_pixels or DEFAULT_MAX_PIXELS)

    items, problems = collect_inputs(list(inputs), recursive=recursive, list_file=list_file,
                                     stdin=sys.stdin.buffer)
    if output == "-" and len(items) + len(problems) != 1:
        raise click.UsageError(f"-o - writes one result to stdout, but {len(items) + len(problems)} inputs were given")
    if output not in (None, "-") and Path(output).exists() and not Path(output).is_dir():
        raise click.UsageError(f"-o {output}: exists and is not a folder")

    jobs, skipped = plan_outputs(items, output, fmt, skip_existing=skip_existing)
    opts = ImageOptions(fmt=fmt, colormap=colormap, invert=invert, side_by_side=side_by_side, max_pixels=limit)

    from .report import Reporter

    reporter = Reporter(total=len(jobs) + len(problems), unit="image", quiet=quiet, stats_path=stats_path)
    try:
        with terminate_as_interrupt():
            for problem in problems:
                label, _, reason = problem.partition(": ")
                reporter.failed(label, reason or problem)
            if skipped:
                reporter.info(f"skipped {skipped} input{'s' if skipped != 1 else ''} whose output exists")
            if jobs:
                predictor = load_predictor(spec)
                _notice(spec, predictor, reporter)

                def done(stats, dest) -> None:  # noqa: ANN001
                    reporter.done(stats, extra=f" -> {dest}" if dest is not None else "")

                def failed(label: str, reason: str) -> None:
                    print_debug_traceback()
                    reporter.failed(label, reason)

                run_images(jobs, predictor, opts, on_done=done, on_failed=failed)
    except KeyboardInterrupt:
        reporter.close()
        raise CliError("interrupted; outputs written so far are complete", exit_codes.INTERRUPTED) from None
    reporter.close()
    if reporter.summary.failed:
        sys.exit(exit_codes.SOME_FAILED)


def _notice(spec, predictor, reporter) -> None:  # noqa: ANN001
    """Licence and unit notes, once per run."""
    from ..hub import registry

    note = registry.licence_notice(spec.source) if hasattr(registry, "licence_notice") else None
    if note:
        click.echo(f"depthcli: note: {note}", err=True)
    if predictor.model.config.metric and not reporter.quiet:
        reporter.info(f"depthcli: metric model: depth in metres (0..{predictor.model.config.max_depth:g} m)")
