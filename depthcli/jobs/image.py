"""One image in, one output written: decode -> prepare -> infer -> render -> encode -> write.

Each step is its own function so a door can run them where it wants (the local CLI pipelines
decoding with inference; a cluster decodes on CPU tasks and infers in model actors; the server
encodes into a response body), and ``run_images`` strings them together for a local batch.
A per-input failure is an ``ImageJobError`` with a one-line reason; the caller adds the label.
"""
from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io.images import DEFAULT_MAX_PIXELS, ImageReadError, read_image
from ..io.inputs import InputItem
from ..io.writers import OutputError
from ..runtime.oom import free_device_memory, is_out_of_memory

FORMATS = {"color": "png", "gray": "png", "gray16": "png", "npy": "npy"}  # --format -> file suffix


class ImageJobError(Exception):
    """One input could not be turned into its output; the message is the one-line reason."""


@dataclass(frozen=True)
class ImageOptions:
    """How an image's depth is rendered and written (everything but the model)."""

    fmt: str = "color"
    colormap: str = "inferno"
    invert: bool = False
    side_by_side: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # None: no decompression-bomb limit


# ------------------------------------------------------------------------------- where to
def output_path(item: InputItem, output: str | None, fmt: str, *, keep_suffix: bool = False) -> Path | None:
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


def plan_outputs(items: list[InputItem], output: str | None, fmt: str, *,
                 skip_existing: bool) -> tuple[list[tuple[InputItem, Path | None]], int]:
    """(input, destination) for every input still to do, and how many were skipped because their
    output exists. Inputs whose outputs would collide (``a.jpg``, ``a.png``) keep their suffix."""
    plain = [output_path(item, output, fmt) for item in items]
    clashing = {d for d, n in Counter(plain).items() if d is not None and n > 1}
    jobs, skipped = [], 0
    for item, dest in zip(items, plain, strict=True):
        if dest in clashing:
            dest = output_path(item, output, fmt, keep_suffix=True)
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


def prepare(predictor, image_bgr: np.ndarray, label: str):  # noqa: ANN001, ANN201 - Prepared
    """The network input (refused before allocating when it cannot fit in memory)."""
    try:
        return predictor.prepare(image_bgr, label)
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
        raise ImageJobError(f"out of memory at {w}x{h}; try a smaller --size or --max-side") from e


def render(image_bgr: np.ndarray, depth_hw: np.ndarray, opts: ImageOptions) -> np.ndarray:
    """The array to write for one image (float32 for npy, uint8/uint16 pictures otherwise)."""
    from ..io import render as r

    if opts.fmt == "npy":
        return depth_hw
    if opts.fmt == "gray16":
        return r.to_gray16(depth_hw, invert=opts.invert)
    picture = r.to_gray8(depth_hw, invert=opts.invert) if opts.fmt == "gray" else r.to_color(
        depth_hw, colormap=opts.colormap, invert=opts.invert)
    return r.side_by_side(image_bgr, picture) if opts.side_by_side else picture


def encode(array: np.ndarray, opts: ImageOptions) -> bytes:
    """The bytes of the output file, built in memory (so a write is one atomic step anywhere)."""
    from ..io import writers

    if opts.fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, np.asarray(array), allow_pickle=False)
        return buf.getvalue()
    try:
        return writers.encode_png(array)
    except OutputError as e:
        raise ImageJobError(str(e)) from e


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


# ------------------------------------------------------------------------------- a batch
def run_images(jobs: Iterable[tuple[InputItem, Path | None]], predictor, opts: ImageOptions, *,  # noqa: ANN001
               on_done: Callable[..., None], on_failed: Callable[[str, str], None]) -> None:
    """Every (input, destination), the next input decoded and prepared in a worker thread while
    the model runs on the current one. ``on_done(stats, dest)`` after each output is written,
    ``on_failed(label, reason)`` for each input that could not be done (the batch carries on)."""
    from ..runtime.pipeline import prefetch_map

    def load(job):  # noqa: ANN001, ANN202 - runs in the prefetch thread
        item, _ = job
        image_bgr = decode(item, opts)
        return image_bgr, prepare(predictor, image_bgr, item.label)

    for (item, dest), future in prefetch_map(load, jobs):
        try:
            image_bgr, prepared = future.result()
            prediction = infer(predictor, prepared)
            write(encode(render(image_bgr, prediction.depth_hw, opts), opts), dest)
        except ImageJobError as e:
            on_failed(item.label, str(e))
            continue
        on_done(prediction.stats, dest)

