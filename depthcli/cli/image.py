"""``depthcli image``: depth maps for photos, folders, globs, lists and stdin."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from . import exit_codes, signals
from .errors import CliError, interrupted_error, print_debug_traceback
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

FORMATS = ("color", "gray", "gray16", "npy", "exr", "ply")  # jobs.image.FORMATS (not imported: --help stays light)


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
                   "at the image's resolution (metres for metric models); exr: the same as a float32 "
                   "EXR (channel Z); ply: a coloured point cloud (metric models, or a relative one with "
                   "--depth-scale). Every PNG/EXR/PLY records how it was made (`depthcli info FILE`).")
@click.option("--colormap", default="inferno", show_default=True, metavar="NAME",
              help="OpenCV colormap for --format color (inferno, turbo, magma, viridis, ...).")
@click.option("--invert", is_flag=True, help="Swap near and far in PNG outputs.")
@click.option("--side-by-side", is_flag=True, help="Write the input beside its depth (color/gray).")
@click.option("--meta", "sidecar", is_flag=True,
              help="Also write the metadata as <stem>_depth.json beside each output (npy included).")
@click.option("--sky-mask", is_flag=True,
              help="Also write <stem>_sky.png, the sky the model found (255 = sky): models with a sky head "
                   "(da3mono-large, da3metric-large).")
@click.option("--focal", "focal_px", type=click.FloatRange(min=0, min_open=True), default=None, metavar="PX",
              help="ply, and the metres of focal-scaled metric models (da3metric-*): focal length in pixels. "
                   "Default: --fov, else the photo's EXIF focal length, else a 60 degree horizontal field of view.")
@click.option("--fov", "fov_deg", type=click.FloatRange(0, 180, min_open=True, max_open=True), default=None,
              metavar="DEG", help="ply and da3metric-*: horizontal field of view in degrees (instead of --focal).")
@click.option("--depth-scale", type=float, default=None, metavar="A",
              help="ply from a relative model (whose output d is inverse depth up to an unknown scale "
                   "and shift): depth = 1 / (A * d + B); without it, ply refuses relative models. "
                   "Metric models need no conversion.")
@click.option("--depth-shift", type=float, default=0.0, show_default=True, metavar="B",
              help="ply from a relative model: B in depth = 1 / (A * d + B).")
@model_options
@click.option("--max-pixels", type=click.IntRange(min=0), default=None,
              help="Refuse images with more pixels than this (decompression bombs); 0 disables. "
                   "Default: 178956970.")
@click.option("--skip-existing", is_flag=True, help="Skip inputs whose output already exists (resume a batch).")
@click.option("--stats", "stats_path", metavar="FILE", help="Write one JSON object per image (- = stdout).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and nothing else on stderr.")
@click.option("--server", metavar="URL", default=None,
              help="Send each image to a running `depthcli serve` at URL instead of loading a model here "
                   "(same outputs, no start-up; the model options are the server's).")
@click.option("--token", envvar="DEPTHCLI_TOKEN", metavar="SECRET", default=None,
              help="--server: the server's token (also $DEPTHCLI_TOKEN).")
@click.option("--ray", "ray_address", metavar="ADDRESS", default=None,
              help="Run on a Ray cluster: host:port, ray://host:port, auto, or local (start Ray here); "
                   "same inputs and outputs (paths on a shared file system, or s3:// / gs:// URIs). "
                   "Needs pip install 'depthcli[ray]'.")
@click.option("--ray-actors", type=click.IntRange(min=1), default=None, metavar="N",
              help="--ray: model actors (default: one per GPU, else one per two CPUs).")
@click.option("--ray-batch", type=click.IntRange(min=1), default=None, metavar="N",
              help="--ray: images per batch (default 4).")
@with_handled_errors
def image_command(inputs, recursive, list_file, output, fmt, colormap, invert, side_by_side, sidecar, sky_mask,
                  focal_px, fov_deg, depth_scale, depth_shift, spec, max_pixels, skip_existing, stats_path,
                  quiet, server, token, ray_address, ray_actors, ray_batch) -> None:  # noqa: ANN001
    """Depth maps for images: files, folders (-r), quoted globs, --list, or - for stdin.

    \b
    Examples:
      depthcli image photo.jpg                       # photo_depth.png beside it
      depthcli image shots/ -r -o out/               # mirror shots/ under out/
      find . -name '*.jpg' | depthcli image --list - -o out/
      depthcli image - -o - < a.jpg > d.png          # stdin to stdout
      depthcli image a.jpg -f npy -o raw/            # raw float32 depth
      depthcli image a.jpg -f ply -m v2-metric-indoor-small --fov 70   # point cloud, metres
      depthcli info out/a_depth.png                  # how an output was made, how to read it back
    """
    from ..io.images import DEFAULT_MAX_PIXELS
    from ..io.inputs import collect_inputs
    from ..jobs.image import ImageOptions, ImageUsageError, check_options, plan_outputs, run_images

    if not inputs and not list_file:
        raise click.UsageError("give at least one INPUT (file, folder, glob or -) or --list FILE")
    if colormap not in _colormap_names():
        raise click.BadParameter(f"unknown colormap {colormap!r}; choose from {', '.join(_colormap_names())}",
                                 param_hint="--colormap")
    if side_by_side and fmt not in ("color", "gray"):
        raise click.UsageError("--side-by-side needs --format color or gray")
    if focal_px is not None and fov_deg is not None:
        raise click.UsageError("give --focal or --fov, not both")
    _refuse_options_that_cannot_apply(fmt, output, server, ray_address)
    if depth_shift and depth_scale is None:
        raise click.UsageError("--depth-shift needs --depth-scale (depth = 1 / (scale * d + shift))")
    if sidecar and output == "-":
        raise click.UsageError("--meta writes a file beside each output; with -o - the metadata is inside "
                               "the PNG/EXR/PLY written to stdout")
    if stats_path == "-" and output == "-":
        raise click.UsageError("--stats - and -o - would both write to stdout")
    if "-" in inputs and list_file == "-":
        raise click.UsageError("stdin cannot be both an image (-) and the --list")
    if server is not None:
        _check_server_options(spec, max_pixels)
    if ray_address is not None:
        _check_ray(server)
        from ..cluster import storage

        collect_inputs, plan_outputs = storage.collect_inputs, storage.plan_outputs  # + s3:// / gs:// URIs
    limit = None if max_pixels == 0 else (max_pixels or DEFAULT_MAX_PIXELS)

    items, problems, left_out = collect_inputs(list(inputs), recursive=recursive, list_file=list_file,
                                               stdin=sys.stdin.buffer)
    if output == "-" and len(items) + len(problems) != 1:
        raise click.UsageError(f"-o - writes one result to stdout, but {len(items) + len(problems)} inputs were given")
    if output not in (None, "-") and Path(output).exists() and not Path(output).is_dir():
        raise click.UsageError(f"-o {output}: exists and is not a folder")

    from ..jobs.naming import NameClash

    try:
        jobs, skipped = plan_outputs(items, output, fmt, skip_existing=skip_existing)
    except NameClash as e:
        raise click.UsageError(str(e)) from None
    opts = ImageOptions(fmt=fmt, colormap=colormap, invert=invert, side_by_side=side_by_side, max_pixels=limit,
                        sidecar=sidecar, focal_px=focal_px, fov_deg=fov_deg, depth_scale=depth_scale,
                        depth_shift=depth_shift, sky_mask=sky_mask)

    from .report import Reporter

    reporter = Reporter(total=len(jobs) + len(problems), unit="image", quiet=quiet, stats_path=stats_path)
    out_of_memory = 0
    try:
        for problem in problems:
            label, _, reason = problem.partition(": ")
            reporter.failed(label, reason or problem)
        if left_out:
            reporter.info(f"depthcli: left out {left_out} depthcli output{'s' if left_out != 1 else ''} found "
                          f"among the inputs (name them explicitly to process them)")
        if skipped:
            reporter.info(f"skipped {skipped} input{'s' if skipped != 1 else ''} whose output exists")
        if jobs and server is not None:
            _run_on_server(server, token, opts, jobs, reporter)
        elif jobs and ray_address is not None:
            say_licence(spec)
            _run_on_ray(ray_address, spec, opts, jobs, reporter, actors=ray_actors, batch_size=ray_batch)
        elif jobs:
            predictor = load_predictor(spec)
            try:
                check_options(opts, predictor.traits)
            except ImageUsageError as e:
                raise click.UsageError(str(e)) from None
            _notice(predictor, reporter)
            from ..jobs.metadata import model_facts

            facts = model_facts(predictor, spec)
            out_of_memory = run_images(jobs, predictor, opts, **_report_to(reporter), facts=facts)
        signals.work_done()  # every output is written: a signal from here on changes nothing
    except KeyboardInterrupt:
        reporter.close()
        raise interrupted_error() from None
    reporter.close()
    if reporter.summary.failed:  # 4 when the only failures were the device running out of memory
        sys.exit(exit_codes.DEVICE if reporter.summary.failed == out_of_memory else exit_codes.SOME_FAILED)


def _refuse_options_that_cannot_apply(fmt: str, output: str | None, server: str | None,
                                      ray_address: str | None) -> None:
    """Options given for a format or a way of running that this run does not use would silently
    do nothing: a usage error instead (exit 2), one line naming them."""
    # --focal/--fov also serve a model whose metres come from the focal length (checked with the model)
    refuse_unused([f for f, name in (("--depth-scale", "depth_scale"), ("--depth-shift", "depth_shift"))
                   if given(name) and fmt != "ply"], "to --format ply")
    if output == "-" and given("sky_mask"):
        refuse_unused(["--sky-mask"], "to outputs written to files, not -o -")
    if fmt in ("npy", "exr", "ply"):
        refuse_unused(["--invert"] if given("invert") else [], "to the PNG formats (color, gray, gray16): "
                      f"{fmt} holds the raw depth")
    if fmt != "color":
        refuse_unused(["--colormap"] if given("colormap") else [], "to --format color")
    if output == "-":
        refuse_unused(["--skip-existing"] if given("skip_existing") else [], "to outputs written to files, not -o -")
    if ray_address is None:
        refuse_unused([f for f, name in (("--ray-actors", "ray_actors"), ("--ray-batch", "ray_batch")) if given(name)],
                      "with --ray")
    if server is None:
        refuse_unused(["--token"] if given("token") else [], "with --server")


def _report_to(reporter) -> dict:  # noqa: ANN001
    """The ``on_done`` / ``on_failed`` callbacks every executor (local, server, cluster) reports
    each image through: one line (or a bar step) per image, --stats, the summary."""

    def on_done(stats, dest) -> None:  # noqa: ANN001
        reporter.done(stats, extra=f" -> {dest}" if dest is not None else "")

    def on_failed(label: str, reason: str) -> None:
        print_debug_traceback()
        reporter.failed(label, reason)

    return {"on_done": on_done, "on_failed": on_failed}


def _notice(predictor, reporter) -> None:  # noqa: ANN001
    """The unit of a metric model, once per run (``load_predictor`` says the licence)."""
    if predictor.config.metric and not reporter.quiet:
        reporter.info(f"depthcli: metric model: depth in metres{_range(predictor.config.max_depth)}")


def _range(max_depth: float | None) -> str:
    """`` (0..20 m)`` for a model with a fixed range (V2 metric); DA3METRIC has none."""
    return f" (0..{max_depth:g} m)" if max_depth else ""


def _check_server_options(spec, max_pixels) -> None:  # noqa: ANN001
    """With --server the model is the server's: a model option here would silently not apply."""
    import dataclasses

    from ..runtime.spec import PredictorSpec

    given = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(PredictorSpec)
             if getattr(spec, f.name) != f.default]
    if max_pixels is not None:
        given.append("--max-pixels")
    if given:
        raise click.UsageError(f"{', '.join(given)}: with --server the server's settings apply "
                               f"(give them to `depthcli serve`)")


def _run_on_server(server: str, token: str | None, opts, jobs, reporter) -> None:  # noqa: ANN001
    """The batch through a running `depthcli serve` (depthcli/serve/client.py)."""
    from ..jobs.image import ImageUsageError, check_options
    from ..serve.client import DepthClient, ServerUnavailable, run_images_remote

    try:
        client = DepthClient(server, token)
        info = client.connect()
        try:
            check_options(opts, _server_traits(info))
        except ImageUsageError as e:
            raise click.UsageError(str(e)) from None
        if info.get("metric") and not reporter.quiet:
            reporter.info(f"depthcli: metric model: depth in metres{_range(info.get('max_depth'))}")
        run_images_remote(jobs, client, opts, **_report_to(reporter))
    except ServerUnavailable as e:
        done = len(reporter.summary.frames)
        tail = f"; the {done} output{'s' if done != 1 else ''} written before are complete" if done else ""
        raise CliError(f"{e}{tail}", exit_codes.USAGE if e.usage else exit_codes.DEVICE) from None


def _server_traits(info: dict):  # noqa: ANN202 - model.configs.Traits
    """The traits of the model a server runs, from its /v1/info."""
    from ..model.configs import INVERSE_DEPTH, METRIC_DEPTH, Traits

    if isinstance(info.get("traits"), dict):
        return Traits.from_dict(info["traits"])
    return Traits(family=str(info.get("family", "depth_anything")),
                  kind=METRIC_DEPTH if info.get("metric") else INVERSE_DEPTH)


def _check_ray(server: str | None) -> None:
    """--ray with --server, or without Ray installed, is a usage error."""
    if server is not None:
        raise click.UsageError("--ray and --server are two ways to run elsewhere: give one")
    require_ray_installed()


def _run_on_ray(address: str, spec, opts, jobs, reporter, **sizes) -> None:  # noqa: ANN001
    """The batch on a Ray cluster (depthcli/cluster/ray_images.py): the same jobs and lines."""
    from ..cluster import ClusterFailure, run_images

    try:
        run_images(address, jobs, spec, opts, **_report_to(reporter), **sizes)
    except ClusterFailure as e:
        raise cluster_error(e) from None
