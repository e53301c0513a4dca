"""``depthcli image --ray``: the per-image job (``jobs.image``) mapped over a Ray Data stream.

    rows (label, source, dest)        from_items: small rows, no pixels
      -> read + decode                CPU tasks (jobs.image.decode), pixels as bytes + shape
      -> prepare, infer, finish,      an actor pool: one predictor loaded per actor (a GPU each
         write atomically             when the cluster has GPUs, a CPU slot otherwise)
      -> one small result row         iterated on the driver: progress, stats, error lines

Streaming: Ray Data runs the stages concurrently with backpressure and the driver consumes the
results as they come (``iter_rows``), so memory is bounded by the blocks in flight, not by the
number of inputs. Errors are data: a bad image becomes a result row with its one-line reason,
never an exception, so Ray never retries it and it never fails the run. Faults: a task or actor
lost with its worker or node is re-run (``max_retries`` / ``max_restarts`` /
``max_task_retries``); each output is written atomically (temp file + rename, one object
upload), so a re-run rewrites the same whole file and the driver counts each input once.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from ..io.inputs import InputItem
from ..jobs.image import ImageOptions
from . import storage
from .session import ClusterFailure, Shape, cluster_shape, connected, wants_gpus

DEFAULT_BATCH = 4  # images per batch: small, so a lost batch costs little and the pool stays busy
TASK_RETRIES = 4  # re-runs of a task or actor call lost with its worker or node (never for bad inputs)


def _spec_for_workers(spec):  # noqa: ANN001, ANN202 - PredictorSpec
    """The model resolved here ($DEPTHCLI_MODEL, a relative path): workers have neither this
    environment nor this working directory."""
    source = spec.source
    if Path(source).expanduser().exists():
        source = os.path.abspath(Path(source).expanduser())
    return replace(spec, model=source)


@contextlib.contextmanager
def retry_args_warning_silenced() -> Iterator[None]:
    """Ray 2.5x deprecates passing ``max_retries`` & co. to ``map_batches`` (named parameters
    for them are planned) but has no other way yet to bound them; the extra pins ``ray<2.64``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        yield


def default_actors(spec, shape: Shape) -> int:  # noqa: ANN001
    """One model per GPU; on CPUs, one per two CPU slots (the other half reads and decodes)."""
    if wants_gpus(spec, shape):
        return max(1, shape.gpus)
    return max(1, shape.cpus // 2)


def _actor_resources(spec, shape: Shape) -> dict:  # noqa: ANN001
    return {"num_gpus": 1, "num_cpus": 1} if wants_gpus(spec, shape) else {"num_cpus": 1}


# ----------------------------------------------------------------------------------- stages
def _row_error(e: BaseException) -> str:
    """One line for an unexpected per-image failure (the image fails, the run goes on)."""
    from ..jobs.image import ImageJobError

    if isinstance(e, ImageJobError):
        return str(e)
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _item(row: dict, data: bytes | None = None) -> InputItem:
    """The row as the ``InputItem`` the job functions take: with ``data`` (an object's or stdin's
    bytes) to decode it, else by its path (which also names it in the output's metadata)."""
    relative = Path(row["relative"])
    if data is not None or row["source"] is None:
        return InputItem(source=None, label=row["label"], relative=relative, data=data or row.get("data"))
    return InputItem(source=Path(row["source"]), label=row["label"], relative=relative)


def decode_batch(table, *, opts: ImageOptions):  # noqa: ANN001, ANN201 - pyarrow.Table -> pyarrow.Table
    """CPU task: read (local path, object, or stdin bytes) and decode each image; the pixels
    travel as raw bytes with their shape and dtype (any size, 8 or 16 bit)."""
    import pyarrow as pa

    from ..jobs.image import decode

    out: dict[str, list] = {k: [] for k in ("index", "label", "source", "relative", "dest", "pixels",
                                            "shape", "dtype", "error")}
    for row in table.to_pylist():
        pixels, shape, dtype, error = None, None, None, None
        try:
            if storage.is_object_uri(row["source"]):
                data = storage.read_bytes(row["source"])
                if not data:
                    raise storage.StorageError("empty file")
                item = _item(row, data)
            else:
                item = _item(row, row["data"])
            image = decode(item, opts)
            pixels, shape, dtype = image.tobytes(), list(image.shape), image.dtype.str
        except Exception as e:  # noqa: BLE001 - every per-image failure is data (one line), never a retry
            error = _row_error(e)
        for key, value in (("index", row["index"]), ("label", row["label"]), ("source", row["source"]),
                           ("relative", row["relative"]), ("dest", row["dest"]), ("pixels", pixels),
                           ("shape", shape), ("dtype", dtype), ("error", error)):
            out[key].append(value)
    return pa.table({
        "index": pa.array(out["index"], pa.int64()), "label": pa.array(out["label"], pa.string()),
        "source": pa.array(out["source"], pa.string()), "relative": pa.array(out["relative"], pa.string()),
        "dest": pa.array(out["dest"], pa.string()), "pixels": pa.array(out["pixels"], pa.large_binary()),
        "shape": pa.array(out["shape"], pa.list_(pa.int64())), "dtype": pa.array(out["dtype"], pa.string()),
        "error": pa.array(out["error"], pa.string()),
    })


class DepthWriter:
    """Actor: one predictor for its lifetime; per row prepare -> infer -> finish -> write.

    A model that cannot be loaded (bad checkpoint, missing device) is not raised: Ray would
    restart the actor over and over. Every row then carries ``fatal`` and the driver stops."""

    def __init__(self, spec, opts: ImageOptions) -> None:  # noqa: ANN001
        self.opts, self.fatal, self.predictor, self.facts = opts, None, None, None
        try:
            self._load(spec)
        except Exception as e:  # noqa: BLE001 - reported to the driver as data
            self.fatal = json.dumps(_fatal(e))

    def _load(self, spec) -> None:  # noqa: ANN001
        from ..jobs.image import check_options
        from ..jobs.metadata import model_facts
        from ..runtime.loading import build_predictor

        self.predictor = build_predictor(spec)
        check_options(self.opts, self.predictor.traits)
        self.facts = model_facts(self.predictor, spec)

    def __call__(self, table):  # noqa: ANN001, ANN204 - pyarrow.Table -> pyarrow.Table
        import pyarrow as pa

        out: dict[str, list] = {k: [] for k in ("index", "label", "dest", "error", "stats", "payload", "fatal")}
        for row in table.to_pylist():
            error, stats, payload = row["error"], None, None
            if self.fatal is None and error is None:
                try:
                    stats, payload = self._one(row)
                except Exception as e:  # noqa: BLE001 - one line for this image, the batch goes on
                    error = _row_error(e)
            for key, value in (("index", row["index"]), ("label", row["label"]), ("dest", row["dest"]),
                               ("error", error), ("stats", stats), ("payload", payload), ("fatal", self.fatal)):
                out[key].append(value)
        return pa.table({
            "index": pa.array(out["index"], pa.int64()), "label": pa.array(out["label"], pa.string()),
            "dest": pa.array(out["dest"], pa.string()), "error": pa.array(out["error"], pa.string()),
            "stats": pa.array(out["stats"], pa.string()), "payload": pa.array(out["payload"], pa.large_binary()),
            "fatal": pa.array(out["fatal"], pa.string()),
        })

    def _one(self, row: dict) -> tuple[str, bytes | None]:
        import numpy as np

        from ..io.formats.metadata import sidecar_bytes, sidecar_path
        from ..jobs.image import finish, focal_for, infer, prepare, sky_path, sky_png

        image_bgr = np.frombuffer(row["pixels"], dtype=np.dtype(row["dtype"])).reshape(row["shape"])
        item = _item(row)
        camera_needed = self.opts.fmt == "ply" or self.predictor.traits.focal_divisor is not None
        if camera_needed and storage.is_object_uri(row["source"]):
            item = _item(row, storage.read_bytes(row["source"]))  # the EXIF focal length, for the camera
        focal_px = focal_for(self.predictor, item, image_bgr.shape[:2], self.opts)
        prediction = infer(self.predictor, prepare(self.predictor, image_bgr, row["label"], focal_px))
        data, meta = finish(item, image_bgr, prediction, self.opts, self.facts)
        dest = row["dest"]
        if dest is None:  # -o -: the bytes go back to the driver, which owns stdout
            return prediction.stats.to_json(), data
        _write(dest, data)
        if self.opts.sidecar:
            _write(_beside(dest, sidecar_path(Path(dest))), sidecar_bytes(meta))
        if self.opts.sky_mask:
            _write(_beside(dest, sky_path(Path(dest))), sky_png(prediction, meta))
        return prediction.stats.to_json(), None


def _beside(dest: str, path: Path) -> str:
    """A file beside ``dest`` (a local path or an object-store URI), as ``path`` names it."""
    return storage.as_uri(path) if storage.is_object_uri(dest) else str(path)


def _write(dest: str, data: bytes) -> None:
    from ..io.writers import OutputError
    from ..jobs.image import ImageJobError

    try:
        storage.write_bytes(dest, data)
    except OutputError as e:
        raise ImageJobError(str(e)) from e


def _fatal(e: BaseException) -> dict:
    """The driver's exit code for a model that cannot be loaded on a worker."""
    from ..jobs.image import ImageUsageError
    from ..model import CheckpointError
    from ..runtime.loading import DeviceError
    from ..runtime.oom import is_out_of_memory

    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if isinstance(e, ImageUsageError):
        kind = "usage"
    elif isinstance(e, CheckpointError):
        kind = "model"
    elif isinstance(e, DeviceError) or is_out_of_memory(e):
        kind = "device"
    else:
        kind, text = "model", f"{type(e).__name__}: {text}"
    return {"kind": kind, "message": text}


# ----------------------------------------------------------------------------------- driver
def run_images(address: str, jobs: list[tuple[InputItem, object]], spec, opts: ImageOptions, *,  # noqa: ANN001
               on_done: Callable[..., None], on_failed: Callable[[str, str], None],
               actors: int | None = None, batch_size: int | None = None) -> None:
    """``jobs.image.run_images`` on a Ray cluster: the same (input, destination) pairs and
    callbacks (``on_done(stats, dest)``, ``on_failed(label, reason)``), in completion order.
    Raises ``ClusterFailure`` when the model cannot be loaded on the workers or the cluster
    cannot be reached."""
    with connected(address):
        _run(jobs, _spec_for_workers(spec), opts, on_done=on_done, on_failed=on_failed,
             actors=actors, batch_size=batch_size)


def _run(jobs, spec, opts, *, on_done, on_failed, actors, batch_size) -> None:  # noqa: ANN001
    import ray.data

    from ..jobs.image import write
    from ..runtime.stats import FrameStats

    shape = cluster_shape()
    actors = actors or default_actors(spec, shape)
    batch = batch_size or DEFAULT_BATCH
    rows = [{"index": i, "label": item.label, "source": storage.source_of(item), "data": item.data,
             "relative": item.relative.as_posix(), "dest": None if dest is None else _worker_dest(dest)}
            for i, (item, dest) in enumerate(jobs)]
    shown = {i: dest for i, (_, dest) in enumerate(jobs)}  # the destination as the local run names it
    labels = {i: item.label for i, (item, _) in enumerate(jobs)}
    blocks = max(1, min(len(rows), max(2 * actors, math.ceil(len(rows) / (8 * batch)))))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    with retry_args_warning_silenced():
        # The decoders reserve no CPU slot, only a cap on how many run: when a node is lost, its model
        # actors are restarted on the nodes left and may take every slot there; decoders that
        # needed a slot would then wait forever for actors that wait for them.
        ds = ds.map_batches(decode_batch, fn_kwargs={"opts": opts}, batch_size=batch, batch_format="pyarrow",
                            num_cpus=0, concurrency=max(1, shape.cpus - actors), max_retries=TASK_RETRIES)
        pool = ray.data.ActorPoolStrategy(min_size=1, initial_size=actors, max_size=actors)  # all start at once
        ds = ds.map_batches(DepthWriter, fn_constructor_kwargs={"spec": spec, "opts": opts}, batch_size=batch,
                            batch_format="pyarrow", compute=pool,
                            max_restarts=-1, max_task_retries=TASK_RETRIES, **_actor_resources(spec, shape))
    seen: set[int] = set()
    try:
        for row in ds.iter_rows():
            index = row["index"]
            if index in seen:  # defensive: a row is delivered once; never count an input twice
                continue
            if row["fatal"]:
                fatal = json.loads(row["fatal"])
                raise ClusterFailure(fatal["message"], fatal["kind"])
            seen.add(index)
            if row["error"] is not None:
                on_failed(row["label"], row["error"])
                continue
            if row["dest"] is None:
                write(row["payload"], None)
            d = json.loads(row["stats"])
            d["input_hw"], d["processed_hw"] = tuple(d["input_hw"]), tuple(d["processed_hw"])
            on_done(FrameStats(**d), shown[index])
    except ClusterFailure:
        raise
    except Exception as e:  # noqa: BLE001 - the cluster gave up (retries spent): name what was not done
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        for index in sorted(set(labels) - seen):
            on_failed(labels[index], f"not processed: the cluster run failed ({type(e).__name__}: {reason})")
        seen = set(labels)
    finally:
        storage.sweep_temp_files(dest for _, dest in jobs)
    for index in sorted(set(labels) - seen):  # never silently lost
        on_failed(labels[index], "not processed: no result came back from the cluster")


def _worker_dest(dest) -> str:  # noqa: ANN001 - Location
    return dest if isinstance(dest, str) else os.path.abspath(dest)


# ----------------------------------------------------------------------------------- add_depth
class DepthColumn:
    """Actor for ``add_depth``: the image column (encoded bytes, or an HxWxC uint8/uint16 array)
    -> float32 depth at the image's size, plus a one-line error column (None when fine)."""

    def __init__(self, spec, column: str, output_column: str, channel_order: str, max_pixels) -> None:  # noqa: ANN001
        from ..runtime.loading import build_predictor

        self.predictor = build_predictor(spec)
        self.column, self.output_column = column, output_column
        self.channel_order, self.max_pixels = channel_order, max_pixels

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        from ..jobs.image import decode, infer, prepare

        depths, errors = [], []
        for value in batch[self.column]:
            try:
                if isinstance(value, (bytes, bytearray, memoryview)):
                    item = InputItem(source=None, label="image", relative=Path("image"), data=bytes(value))
                    image_bgr = decode(item, ImageOptions(max_pixels=self.max_pixels))
                else:
                    image_bgr = np.asarray(value)
                    if self.channel_order == "rgb" and image_bgr.ndim == 3:
                        image_bgr = image_bgr[..., 2::-1] if image_bgr.shape[2] >= 3 else image_bgr
                    image_bgr = np.ascontiguousarray(image_bgr)
                depths.append(infer(self.predictor, prepare(self.predictor, image_bgr, "image")).depth_hw)
                errors.append(None)
            except Exception as e:  # noqa: BLE001 - errors are data: one row fails, not the dataset
                depths.append(np.zeros((0, 0), np.float32))
                errors.append(_row_error(e))
        out = dict(batch)
        column = np.empty(len(depths), dtype=object)
        column[:] = depths
        out[self.output_column] = column
        out[f"{self.output_column}_error"] = np.array(errors, dtype=object)
        return out
