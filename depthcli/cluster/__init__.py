"""depthcli on a Ray cluster: ``depthcli image --ray`` / ``depthcli video --ray``, and
``add_depth`` for people who already hold a Ray Dataset (docs/scale.md).

Nothing here imports Ray until a run starts (``pip install 'depthcli[ray]'``); the CLI calls
``require_ray`` first to turn a missing install into a usage error.

    import ray, depthcli.cluster
    ds = ray.data.read_binary_files("s3://bucket/photos/")          # column "bytes"
    ds = depthcli.cluster.add_depth(ds, column="bytes", model="v2-small")
    # each row gains "depth" (float32, the image's h x w, the model's raw output) and
    # "depth_error" (None, or the one-line reason that image failed)
"""
from __future__ import annotations

from .session import INSTALL_HINT, ClusterFailure, RayUnavailable, require_ray

__all__ = ["INSTALL_HINT", "ClusterFailure", "RayUnavailable", "add_depth", "require_ray", "run_images",
           "run_videos"]


def run_images(address: str, jobs, spec, opts, **kwargs):  # noqa: ANN001, ANN201
    """``jobs.image.run_images`` over Ray (see ``ray_images.run_images``)."""
    from .ray_images import run_images as run

    return run(address, jobs, spec, opts, **kwargs)


def run_videos(address: str, paths, spec, opts, **kwargs):  # noqa: ANN001, ANN201
    """One Ray task per video, each ``jobs.video.run_video`` (see ``ray_videos.run_videos``)."""
    from .ray_videos import run_videos as run

    return run(address, paths, spec, opts, **kwargs)


def add_depth(ds, *, spec=None, column: str = "image", output_column: str = "depth",  # noqa: ANN001, ANN201
              channel_order: str = "rgb", actors: int | None = None, batch_size: int = 4,
              max_pixels: int | None = None, **model_options):
    """A Ray Dataset with a depth column added, computed by an actor pool (one model per actor).

    ``column`` holds encoded image files (bytes, as ``ray.data.read_binary_files`` gives) or
    decoded HxWxC uint8/uint16 arrays (``ray.data.read_images`` gives RGB: ``channel_order``
    ``"rgb"``; pass ``"bgr"`` for OpenCV arrays). The model is ``spec`` (a
    ``runtime.spec.PredictorSpec``) or the CLI's model options as keywords (``model``,
    ``model_version``, ``device``, ``precision``, ``size``, ``max_side``). ``output_column`` gets
    the raw float32 depth at each image's size, exactly what ``depthcli image -f npy`` writes;
    ``<output_column>_error`` is None or the one-line reason that image failed (an empty depth).
    Lazy, as Ray Data is: nothing runs until the dataset is consumed or written. Needs an
    initialised Ray (``ray.init``) or lets Ray Data start one.
    """
    import ray
    import ray.data

    from ..io.images import DEFAULT_MAX_PIXELS
    from ..runtime.spec import PredictorSpec
    from .ray_images import DepthColumn, _spec_for_workers
    from .session import cluster_shape, wants_gpus

    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    spec = _spec_for_workers(spec or PredictorSpec(**model_options))
    if not ray.is_initialized():
        ray.init()
    shape = cluster_shape()
    gpus = wants_gpus(spec, shape)
    actors = actors or (max(1, shape.gpus) if gpus else max(1, shape.cpus // 2))
    from .ray_images import retry_args_warning_silenced

    with retry_args_warning_silenced():
        return ds.map_batches(
            DepthColumn, fn_constructor_kwargs={"spec": spec, "column": column, "output_column": output_column,
                                                "channel_order": channel_order,
                                                "max_pixels": max_pixels or DEFAULT_MAX_PIXELS},
            batch_size=batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
            max_restarts=-1, max_task_retries=4, num_cpus=1, **({"num_gpus": 1} if gpus else {}))
