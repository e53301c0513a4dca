"""``depthcli image``: depth maps for photos, folders, globs, lists and stdin."""
from __future__ import annotations

import io
import sys
from collections import Counter
from pathlib import Path

import click

from . import exit_codes
from .errors import CliError, is_out_of_memory, print_debug_traceback
from .options import load_predictor, model_options, with_handled_errors
from .signals import terminate_as_interrupt

FORMATS = {"color": "png", "gray": "png", "gray16": "png", "npy": "npy"}


def _colormap_names() -> list[str]:
    from ..io.render import COLORMAPS

    return sorted(COLORMAPS)


def output_path(item, output: str | None, fmt: str, *, keep_suffix: bool = False) -> Path | None:  # noqa: ANN001
    """Where an input's depth goes: beside it, or mirrored under -o DIR; None means stdout.
    ``keep_suffix`` names ``a.jpg`` -> ``a_jpg_depth.png``, for inputs whose names differ only there."""
    if output == "-" or (output is None and item.source is None):
        return None
    src = Path(item.relative.name)
    stem = f"{src.stem}_{src.suffix.lstrip('.')}" if keep_suffix and src.suffix else src.stem
    name = f"{stem}_depth.{FORMATS[fmt]}"
    if output is None:
        return item.source.parent / name
    return Path(output) / item.relative.parent / name


def render(image_bgr, depth_hw, *, fmt: str, colormap: str, invert: bool, side_by_side: bool):  # noqa: ANN001, ANN201
    """The array to write for one image (float32 for npy, uint8/uint16 pictures otherwise)."""
    from ..io import render as r

    if fmt == "npy":
        return depth_hw
    if fmt == "gray16":
        return r.to_gray16(depth_hw, invert=invert)
    picture = r.to_gray8(depth_hw, invert=invert) if fmt == "gray" else r.to_color(
        depth_hw, colormap=colormap, invert=invert)
    return r.side_by_side(image_bgr, picture) if side_by_side else picture


def write(array, path: Path | None, fmt: str) -> None:  # noqa: ANN001
    from ..io import writers

    if path is None:
        if fmt == "npy":
            buf = io.BytesIO()
            import numpy as np

            np.save(buf, array)
            writers.write_stdout_bytes(buf.getvalue())
        else:
            writers.write_stdout_bytes(writers.encode_png(array))
    elif fmt == "npy":
        writers.write_npy(path, array)
    else:
        writers.write_png(path, array)


@click.command("image")
@click.argument("inputs", nargs=-1, metavar="INPUT...")
@click.option("-r", "--recursive", is_flag=True, help="Descend into subfolders of folder inputs.")
@click.option("--list", "list_file", metavar="FILE", help="Read input paths, one per line, from FILE (- = stdin).")
@click.option("-o", "--output", metavar="DIR|-", help="Output folder (created; subfolders mirrored), or - for stdout. "
              "Default: beside each input.")
@click.option("-f", "--format", "fmt", type=click.Choice(list(FORMATS)), default="color", show_default=True,
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
def image_command(inputs, recursive, list_file, output, fmt, colormap, invert, side_by_side, model,
                  model_version, device, precision, size, max_side, max_pixels, skip_existing, stats_path,
                  quiet) -> None:  # noqa: ANN001
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

    plain = [output_path(item, output, fmt) for item in items]
    clashing = {d for d, n in Counter(plain).items() if d is not None and n > 1}  # a.jpg and a.png
    jobs, skipped = [], 0
    for item, dest in zip(items, plain, strict=True):
        if dest in clashing:
            dest = output_path(item, output, fmt, keep_suffix=True)
        if skip_existing and dest is not None and dest.exists():
            skipped += 1
            continue
        jobs.append((item, dest))

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
                predictor = load_predictor(model=model, model_version=model_version, device=device,
                                           precision=precision, size=size, max_side=max_side)
                _notice(model, predictor, reporter)
                _process(jobs, predictor, reporter, fmt=fmt, colormap=colormap, invert=invert,
                         side_by_side=side_by_side, max_pixels=limit)
    except KeyboardInterrupt:
        reporter.close()
        raise CliError("interrupted; outputs written so far are complete", exit_codes.INTERRUPTED) from None
    reporter.close()
    if reporter.summary.failed:
        sys.exit(exit_codes.SOME_FAILED)


def _notice(model: str | None, predictor, reporter) -> None:  # noqa: ANN001
    """Licence and unit notes, once per run."""
    from ..hub import registry
    from .options import model_source

    name = model_source(model)
    note = registry.licence_notice(name) if hasattr(registry, "licence_notice") else None
    if note:
        click.echo(f"depthcli: note: {note}", err=True)
    if predictor.model.config.metric and not reporter.quiet:
        reporter.info(f"depthcli: metric model: depth in metres (0..{predictor.model.config.max_depth:g} m)")


def _process(jobs, predictor, reporter, *, fmt, colormap, invert, side_by_side, max_pixels) -> None:  # noqa: ANN001
    from ..io.images import ImageReadError, read_image
    from ..io.writers import OutputError
    from ..runtime.pipeline import prefetch_map

    def load(job):  # noqa: ANN001, ANN202 - runs in the prefetch thread
        item, _ = job
        image = read_image(item.data if item.source is None else item.source, max_pixels=max_pixels)
        return image, predictor.prepare(image, item.label)

    for (item, dest), future in prefetch_map(load, jobs):
        try:
            image, prepared = future.result()
        except ImageReadError as e:
            print_debug_traceback()
            reporter.failed(item.label, str(e))
            continue
        except (ValueError, MemoryError) as e:
            print_debug_traceback()
            reporter.failed(item.label, f"cannot prepare: {e}")
            continue
        try:
            prediction = predictor.infer(prepared)
        except RuntimeError as e:
            if not is_out_of_memory(e):
                raise
            reporter.failed(item.label, f"out of memory at {prepared.input_bchw.shape[-1]}x"
                                        f"{prepared.input_bchw.shape[-2]}; try a smaller --size or --max-side")
            _free_cuda()
            continue
        try:
            write(render(image, prediction.depth_hw, fmt=fmt, colormap=colormap, invert=invert,
                         side_by_side=side_by_side), dest, fmt)
        except OutputError as e:
            print_debug_traceback()
            reporter.failed(item.label, str(e))
            continue
        reporter.done(prediction.stats, extra=f" -> {dest}" if dest is not None else "")


def _free_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
