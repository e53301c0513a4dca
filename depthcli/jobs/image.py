"""One image in, one output written: decode -> prepare -> infer -> render -> encode -> write.

Each step is its own function so a door can run them where it wants (the local CLI pipelines
decoding with inference; a cluster decodes on CPU tasks and infers in model actors; the server
encodes into a response body), and ``run_images`` strings them together for a local batch.
A per-input failure is an ``ImageJobError`` with a one-line reason; the caller adds the label.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io.images import DEFAULT_MAX_PIXELS, ImageReadError, read_image
from ..io.inputs import InputItem
from ..io.writers import OutputError, signals_held
from ..model.configs import INVERSE_DEPTH
from ..runtime.oom import free_device_memory, is_out_of_memory
from . import naming

FORMATS = {"color": "png", "gray": "png", "gray16": "png", "npy": "npy", "exr": "exr",
           "ply": "ply"}  # --format -> file suffix


class ImageUsageError(ValueError):
    """Options that cannot work with this model (a usage error: exit 2 in the CLI)."""


class ImageJobError(Exception):
    """One input could not be turned into its output; the message is the one-line reason.
    ``out_of_memory``: the device ran out of memory running it (the CLI's exit 4 when that is
    the only kind of failure)."""

    def __init__(self, reason: str, *, out_of_memory: bool = False) -> None:
        super().__init__(reason)
        self.out_of_memory = out_of_memory


@dataclass(frozen=True)
class ImageOptions:
    """How an image's depth is rendered and written (everything but the model)."""

    fmt: str = "color"
    colormap: str = "inferno"
    invert: bool = False
    side_by_side: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # None: no decompression-bomb limit
    sidecar: bool = False  # --meta: also <stem>_depth.json beside the output
    focal_px: float | None = None  # ply, and the metres of a focal-scaled model (DA3METRIC): --focal
    fov_deg: float | None = None  # the same, as --fov (horizontal)
    depth_scale: float | None = None  # ply from a relative model: depth = 1 / (scale * d + shift)
    depth_shift: float = 0.0
    sky_mask: bool = False  # --sky-mask: also <stem>_sky.png (models with a sky head)


def check_options(opts: ImageOptions, traits) -> None:  # noqa: ANN001 - model.configs.Traits
    """Refuse what this model cannot give (``traits``: the model's, see ``model/configs.py``): a
    clip model has no depth for one image alone; a point cloud needs depth, and a relative
    model's output is known only up to an unknown scale and shift, so only an explicit
    conversion (``--depth-scale``/``--depth-shift``) makes one.

    ``--focal``/``--fov`` are the camera of a point cloud, and for a model whose metres scale with
    the focal length (DA3METRIC: ``traits.focal_divisor``) the focal length of every output's
    depth, whatever the format (``focal_for``); for any other model they only apply to ply. This
    needs the model, so it is checked here, where every door (local, server, cluster) checks the
    options against it, rather than before loading it."""
    if traits.temporal:
        raise ImageUsageError("this is a video model (Video Depth Anything): it estimates depth over a clip's "
                              "frames; use `depthcli video` or `depthcli webcam`, or an image model such as v2-small")
    camera = [name for name, value in (("--focal", opts.focal_px), ("--fov", opts.fov_deg)) if value is not None]
    if camera and opts.fmt != "ply" and traits.focal_divisor is None:
        verb = "applies" if len(camera) == 1 else "apply"
        raise ImageUsageError(f"{', '.join(camera)} {verb} only to --format ply (or to a metric model whose "
                              f"metres depend on the focal length, such as da3metric-large)")
    if opts.fmt == "ply" and not traits.metric and opts.depth_scale is None:
        convert = ("depth = 1 / (scale * d + shift)" if traits.kind == INVERSE_DEPTH
                   else "depth = scale * d + shift")
        raise ImageUsageError(
            f"--format ply needs metric depth: this is a relative model ({traits.kind} up to an unknown "
            f"scale and shift); use a metric model (e.g. v2-metric-indoor-small) or give --depth-scale "
            f"(and --depth-shift) to convert: {convert}")
    if opts.sky_mask and not traits.sky:
        raise ImageUsageError("--sky-mask needs a model with a sky head (da3mono-large, da3metric-large)")
    if traits.metric and (opts.depth_scale is not None or opts.depth_shift):
        raise ImageUsageError("--depth-scale/--depth-shift convert a relative model's output; "
                              "this metric model already gives metres")


# ------------------------------------------------------------------------------- where to
def output_folder(item: InputItem, output: str | None) -> Path | None:
    """Where an input's depth goes: beside it, or under -o DIR with its subfolders mirrored;
    None means stdout."""
    if output == "-" or (output is None and item.source is None):
        return None
    if output is None:
        return item.source.parent
    return Path(output) / item.relative.parent


def plan_outputs(items: list[InputItem], output: str | None, fmt: str, *,
                 skip_existing: bool) -> tuple[list[tuple[InputItem, Path | None]], int]:
    """(input, destination) for every input still to do, and how many were skipped because their
    output exists. Names follow ``jobs.naming``: inputs whose outputs would land on one path keep
    enough of their own path to be told apart (``a_jpg_depth.png``, ``shots_a_jpg_depth.png``),
    and no output replaces an input; ``NameClash`` when nothing tells them apart."""
    folders = [output_folder(item, output) for item in items]
    to_files = [(item, folder) for item, folder in zip(items, folders, strict=True) if folder is not None]
    sources = [naming.source_for(folder, item.source, name=item.relative.name) for item, folder in to_files]
    reserved = naming.reserved_by_inputs([item.source for item in items], [FORMATS[fmt]])
    stems = iter(naming.distinct_stems(sources, reserved))
    jobs, skipped = [], 0
    for item, folder in zip(items, folders, strict=True):
        dest = None if folder is None else folder / f"{next(stems)}{naming.OUTPUT_MARK}.{FORMATS[fmt]}"
        if skip_existing and dest is not None and dest.exists():
            skipped += 1
            continue
        jobs.append((item, dest))
    return jobs, skipped


# ------------------------------------------------------------------------------- the steps
def decode(item: InputItem, opts: ImageOptions) -> np.ndarray:
    """The input as BGR (uint8/uint16), as OpenCV reads it, EXIF orientation applied."""
    try:
        return read_image(item.data if item.source is None else item.source, max_pixels=opts.max_pixels)
    except ImageReadError as e:
        raise ImageJobError(str(e)) from e


def prepare(predictor, image_bgr: np.ndarray, label: str, focal_px: float | None = None):  # noqa: ANN001, ANN201
    """The network input (refused before allocating when it cannot fit in memory); ``focal_px``
    the photo's focal length, for a model whose metres depend on it (``focal_for``)."""
    try:
        return predictor.prepare(image_bgr, label, focal_px=focal_px)
    except (ValueError, MemoryError) as e:
        raise ImageJobError(f"cannot prepare: {e}") from e


def infer(predictor, prepared):  # noqa: ANN001, ANN201 - Prediction
    """The forward pass; running out of (device) memory fails this input only."""
    try:
        return predictor.infer(prepared)
    except (RuntimeError, MemoryError) as e:
        if not is_out_of_memory(e):
            raise
        free_device_memory()
        h, w = prepared.input_bchw.shape[-2:]
        raise ImageJobError(f"out of memory at {w}x{h}; try a smaller --size or --max-side",
                            out_of_memory=True) from e


def infer_batch(predictor, batch: list) -> list:  # noqa: ANN001 - Prepared -> Prediction | ImageJobError
    """Inputs of one network size in one forward (``--batch``); each result is its Prediction or
    the ImageJobError of that input. A batch that runs out of memory is retried one by one, so
    whatever fits alone still runs."""
    if len(batch) > 1:
        try:
            return predictor.infer_batch(batch)
        except (RuntimeError, MemoryError) as e:
            if not is_out_of_memory(e):
                raise
            free_device_memory()
    results: list = []
    for prepared in batch:
        try:
            results.append(infer(predictor, prepared))
        except ImageJobError as e:
            results.append(e)
    return results


def focal_for(predictor, item: InputItem, image_hw: tuple[int, int], opts: ImageOptions) -> float | None:  # noqa: ANN001
    """The photo's focal length in pixels for a model whose metres depend on it (DA3METRIC:
    ``Traits.focal_divisor``): --focal, --fov, the photo's EXIF or the 60 degree default, as
    a point cloud's camera; None for every other model."""
    if predictor.traits.focal_divisor is None:
        return None
    return camera_for(item, image_hw, opts).fx


def camera_for(item: InputItem, image_hw: tuple[int, int], opts: ImageOptions):  # noqa: ANN201 - Camera
    """The pinhole camera of a ``ply`` output: --focal, --fov, the input's EXIF, or the default."""
    from ..io.formats.intrinsics import exif_focal_px, pinhole_camera

    h, w = image_hw
    exif = None
    if opts.focal_px is None and opts.fov_deg is None:
        exif = exif_focal_px(item.data if item.source is None else item.source, h, w)
    return pinhole_camera(h, w, focal_px=opts.focal_px, fov_deg=opts.fov_deg, exif_focal=exif)


def point_depth(depth_hw: np.ndarray, opts: ImageOptions, kind: str = INVERSE_DEPTH) -> np.ndarray:
    """The z of a point cloud: the model's metres; for a relative model, ``1 / (scale * d +
    shift)`` of its inverse depth ``d``, or ``scale * d + shift`` of its relative depth (DA3)
    (pixels where that is not finite and positive are dropped)."""
    if opts.depth_scale is None:
        return depth_hw
    affine = np.float64(opts.depth_scale) * depth_hw + opts.depth_shift
    if kind != INVERSE_DEPTH:
        return affine.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return (1.0 / affine).astype(np.float32)


def render(image_bgr: np.ndarray, depth_hw: np.ndarray, opts: ImageOptions, camera=None,  # noqa: ANN001
           facts: dict | None = None) -> np.ndarray:
    """The array to write for one image: float32 depth for npy/exr, the vertices for ply (with
    ``camera``, else one from the options alone), uint8/uint16 pictures otherwise (near bright
    whatever the model's kind, ``facts["kind"]``: ``metadata.picture_invert``)."""
    from ..io import render as r
    from .metadata import picture_invert

    kind = (facts or {}).get("kind", INVERSE_DEPTH)
    invert = picture_invert(opts.invert, facts)

    if opts.fmt in ("npy", "exr"):
        return depth_hw
    if opts.fmt == "ply":
        from ..io.formats.intrinsics import pinhole_camera
        from ..io.formats.ply import point_cloud

        h, w = depth_hw.shape
        cam = camera or pinhole_camera(h, w, focal_px=opts.focal_px, fov_deg=opts.fov_deg)
        return point_cloud(point_depth(depth_hw, opts, kind), r.to_bgr8(image_bgr), cam)
    if opts.fmt == "gray16":
        return r.to_gray16(depth_hw, invert=invert)
    picture = r.to_gray8(depth_hw, invert=invert) if opts.fmt == "gray" else r.to_color(
        depth_hw, colormap=opts.colormap, invert=invert)
    return r.side_by_side(image_bgr, picture) if opts.side_by_side else picture


def metadata(facts: dict | None, prediction, opts: ImageOptions, *, name: str | None = None,  # noqa: ANN001
             camera=None) -> dict:  # noqa: ANN001
    """The JSON object recorded with one image's output: the run's ``facts``
    (``jobs.metadata.model_facts``), the sizes, and how to read the values back."""
    from .metadata import picture_invert, value_metadata

    depth_hw, stats = prediction.depth_hw, prediction.stats
    meta = dict(facts or {})
    meta.update({"format": opts.fmt, "input": name, "input_hw": list(depth_hw.shape[:2]),
                 "network_hw": list(stats.processed_hw)})
    if getattr(prediction, "focal_px", None) is not None:  # metres scaled with the photo's focal length
        meta["focal_px"] = prediction.focal_px
        meta["metres"] = "network output x (focal_px x network width / input width) / 300 (DA3METRIC)"
    if opts.fmt == "ply":
        meta["points"] = "one per pixel with finite depth > 0; x right, y down, z forward (OpenCV camera)"
        conversion = ("1 / (scale * d + shift)" if meta.get("kind", INVERSE_DEPTH) == INVERSE_DEPTH
                      else "scale * d + shift")
        meta["z"] = ("model output (metres)" if opts.depth_scale is None else
                     f"depth = {conversion}, d the model output; scale = {opts.depth_scale:g}, "
                     f"shift = {opts.depth_shift:g}")
        if opts.depth_scale is not None:
            meta["depth_scale"], meta["depth_shift"] = opts.depth_scale, opts.depth_shift
        if camera is not None:
            meta["camera"] = camera.to_dict()
        meta["unproject"] = "x = (col + 0.5 - cx) * z / fx, y = (row + 0.5 - cy) * z / fy"
    else:
        meta.update(value_metadata(depth_hw, opts.fmt, invert=picture_invert(opts.invert, facts),
                                   colormap=opts.colormap))
        if opts.side_by_side:
            meta["layout"] = "side by side: the input on the left, the depth on the right (same size)"
    return meta


def encode(array: np.ndarray, opts: ImageOptions, meta: dict | None = None) -> bytes:
    """The bytes of the output file, built in memory (so a write is one atomic step anywhere),
    ``meta`` embedded: a PNG text chunk, an EXR header attribute, a PLY comment (npy: none)."""
    from ..io import writers

    if opts.fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, np.asarray(array), allow_pickle=False)
        return buf.getvalue()
    if opts.fmt == "exr":
        from ..io.formats.exr import encode_exr

        return encode_exr(array, meta)
    if opts.fmt == "ply":
        from ..io.formats.ply import encode_ply

        return encode_ply(array, meta)
    try:
        png = writers.encode_png(array)
    except OutputError as e:
        raise ImageJobError(str(e)) from e
    if meta is None:
        return png
    from ..io.formats.metadata import add_png_text, to_json

    return add_png_text(png, to_json(meta))


def write(data: bytes, dest: Path | None) -> None:
    """Atomically to ``dest`` (temp file + rename), or to stdout when ``dest`` is None."""
    from ..io import writers

    if dest is None:
        writers.write_stdout_bytes(data)
        return
    try:
        writers.write_bytes(dest, data)
    except OutputError as e:
        raise ImageJobError(str(e)) from e


def write_sidecar(meta: dict, dest: Path) -> None:
    """``--meta``: the metadata as ``<stem>_depth.json`` beside ``dest``, atomically."""
    from ..io.formats.metadata import sidecar_bytes, sidecar_path

    write(sidecar_bytes(meta), sidecar_path(dest))


def sky_path(dest: Path) -> Path:
    """``a_depth.png`` -> ``a_sky.png``: the sky mask beside its depth output."""
    stem = dest.stem[: -len("_depth")] if dest.stem.endswith("_depth") else dest.stem
    return dest.with_name(f"{stem}_sky.png")


def sky_png(prediction, meta: dict) -> bytes:  # noqa: ANN001 - Prediction
    """``--sky-mask``: the sky as an 8-bit PNG (255 = sky, 0 = not), with the output's metadata
    and how it was made; it goes to ``sky_path(dest)``."""
    from ..io import writers
    from ..io.formats.metadata import add_png_text, to_json

    mask = prediction.sky_mask()
    png = writers.encode_png(np.where(mask, 255, 0).astype(np.uint8))
    sky_meta = {**{k: v for k, v in meta.items() if k not in ("min", "max", "formula", "levels", "invert",
                                                                "colormap", "precision_note")},
                "format": "sky", "values": "255 = sky: the sky head's output >= 0.3, resized as the depth is "
                                            "(those pixels' depth is the 0.99 quantile of the others')"}
    return add_png_text(png, to_json(sky_meta))


def finish(item: InputItem, image_bgr: np.ndarray, prediction, opts: ImageOptions,  # noqa: ANN001
           facts: dict | None = None, *, name: str | None = None) -> tuple[bytes, dict]:
    """One predicted image's output file (bytes) and its metadata: camera (ply), render, encode.
    Every door (local batch, cluster actor, server) ends an image with this, then writes.
    ``name``: the input's name in the metadata (default: its path below the input folder)."""
    cam = camera_for(item, image_bgr.shape[:2], opts) if opts.fmt == "ply" else None
    if name is None:
        name = item.relative.as_posix() if item.source else "-"
    meta = metadata(facts, prediction, opts, name=name, camera=cam)
    return encode(render(image_bgr, prediction.depth_hw, opts, camera=cam, facts=facts), opts, meta), meta


# ------------------------------------------------------------------------------- a batch
def run_images(jobs: Iterable[tuple[InputItem, Path | None]], predictor, opts: ImageOptions, *,  # noqa: ANN001
               on_done: Callable[..., None], on_failed: Callable[[str, str], None],
               facts: dict | None = None) -> int:
    """Every (input, destination), the next inputs decoded and prepared in a worker thread while
    the model runs on the current ones (``predictor.batch`` of one network size per forward).
    Returns how many inputs failed for lack of device memory. ``on_done(stats, dest)`` after each output is written,
    ``on_failed(label, reason)`` for each input that could not be done (the batch carries on).
    ``facts`` (``jobs.metadata.model_facts``) go into every output's metadata."""
    from ..runtime.pipeline import prefetch_map

    batch_size = max(1, getattr(predictor, "batch", 1))
    waiting: list[tuple[InputItem, Path | None, np.ndarray, object]] = []  # one network size, < batch_size
    out_of_memory = 0

    def load(job):  # noqa: ANN001, ANN202 - runs in the prefetch thread
        item, _ = job
        image_bgr = decode(item, opts)
        focal_px = focal_for(predictor, item, image_bgr.shape[:2], opts)
        return image_bgr, prepare(predictor, image_bgr, item.label, focal_px)

    def flush() -> None:
        nonlocal out_of_memory
        results = infer_batch(predictor, [prepared for *_, prepared in waiting])
        for (item, dest, image_bgr, _), result in zip(waiting, results, strict=True):
            try:
                if isinstance(result, ImageJobError):
                    out_of_memory += result.out_of_memory
                    raise result
                data, meta = finish(item, image_bgr, result, opts, facts)
                with signals_held():  # a signal waits until the output and its sidecar are written
                    write(data, dest)
                    if opts.sidecar and dest is not None:
                        write_sidecar(meta, dest)
                    if opts.sky_mask and dest is not None:
                        write(sky_png(result, meta), sky_path(dest))
            except ImageJobError as e:
                on_failed(item.label, str(e))
                continue
            on_done(result.stats, dest)
        waiting.clear()

    for (item, dest), future in prefetch_map(load, jobs, ahead=max(2, batch_size)):
        try:
            image_bgr, prepared = future.result()
        except ImageJobError as e:
            on_failed(item.label, str(e))
            continue
        if waiting and waiting[0][3].input_bchw.shape != prepared.input_bchw.shape:
            flush()
        waiting.append((item, dest, image_bgr, prepared))
        if len(waiting) >= batch_size:
            flush()
    if waiting:
        flush()
    return out_of_memory

