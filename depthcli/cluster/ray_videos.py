"""``depthcli video --ray``: one Ray task per video, each running ``jobs.video.run_video`` exactly
as the local command does; what it would have shown comes back as events that the driver
replays into its own reporter (per-frame lines, ``--stats`` JSONL, the summary) and error lines.

A task lost with its worker or node is run again from the start (``max_retries``): the video is
written to a temporary file renamed into place when finalised, and every ``--frames`` file
atomically, so a re-run replaces them whole and the driver replays only the run that returned.
Object-store inputs are downloaded to the task's temporary folder first, and object-store
outputs uploaded from it when the video is done (OpenCV and FFmpeg need files).
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import storage
from .ray_images import _spec_for_workers
from .session import ClusterFailure, cluster_shape, connected, wants_gpus

TASK_RETRIES = 3


class _Recorder:
    """The reporter ``run_video`` talks to, on the worker: it keeps what to show as events."""

    def __init__(self, events: list, total: int | None) -> None:
        from ..runtime.stats import RunSummary

        self.events, self.summary, self.quiet = events, RunSummary(), False
        self._t0 = time.perf_counter()
        events.append(("reporter", total))

    def info(self, text: str) -> None:
        self.events.append(("info", text))

    def done(self, stats, extra: str = "") -> None:  # noqa: ANN001 - FrameStats
        self.summary.add(stats)
        self.events.append(("frame", stats.to_json()))

    def close(self) -> str:
        self.events.append(("close", time.perf_counter() - self._t0))
        return ""


def video_task(path: str, cwd: str, spec, opts) -> tuple[Any, list]:  # noqa: ANN001
    """One video on a worker: (status, events). Status is run_video's (True, False, None), or
    ("usage", message) / ("fatal", kind, message) for what ends the whole run."""
    from ..jobs.video import VideoUsageError, run_video
    from .ray_images import _fatal

    if os.path.isdir(cwd):  # a shared file system: relative paths and messages as on the driver
        os.chdir(cwd)
    events: list = []
    try:
        from ..jobs.metadata import model_facts
        from ..runtime.loading import build_predictor

        predictor = build_predictor(spec)
        facts = model_facts(predictor, spec)
    except Exception as e:  # noqa: BLE001 - the driver maps it to an exit code
        fatal = _fatal(e)
        return ("fatal", fatal["kind"], fatal["message"]), events

    def new_reporter(total: int | None) -> _Recorder:
        return _Recorder(events, total)

    def error(line: str) -> None:
        events.append(("error", line))

    with tempfile.TemporaryDirectory(prefix="depthcli-video-") as tmp:
        local_path, run_opts, upload_to = path, opts, None
        try:
            if storage.is_object_uri(path):
                local_path = str(Path(tmp, "in", storage.as_uri(path).rsplit("/", 1)[-1]))
                storage.download(path, Path(local_path))
            if storage.is_object_uri(opts.output) or (opts.output is None and storage.is_object_uri(path)):
                upload_to = opts.output or storage.parent_uri(path)
                run_opts = replace(opts, output=str(Path(tmp, "out")))
        except (storage.StorageError, OSError) as e:
            events.append(("error", f"depthcli: {path}: {e}"))
            return None, events
        try:
            status: Any = run_video(local_path, predictor, run_opts, new_reporter=new_reporter, error=error,
                                    facts=facts)
        except VideoUsageError as e:
            return ("usage", str(e)), events
        if upload_to is not None:
            out = Path(tmp, "out")
            try:
                if out.exists():
                    storage.upload_tree(out, upload_to)
            except Exception as e:  # noqa: BLE001 - OutputError / OSError: this video failed
                events.append(("error", f"depthcli: {path}: {e}"))
                status = False
            rename = {str(out): upload_to.rstrip("/"), local_path: path}
            events[:] = [(kind, _replace_all(v, rename) if isinstance(v, str) else v) for kind, v in events]
    return status, events


def _replace_all(text: str, mapping: dict[str, str]) -> str:
    for old, new in mapping.items():
        text = text.replace(old, new)
    return text


def run_videos(address: str, paths: list[str], spec, opts, *, new_reporter: Callable[[int | None], Any],  # noqa: ANN001
               error: Callable[[str], None]) -> list[bool | None]:
    """Every video as its own task (a GPU each when the cluster has them, else a CPU slot);
    results are shown as each video finishes. Returns run_video's status per video, in
    completion order. Raises ``VideoUsageError`` (exit 2) and ``ClusterFailure``."""
    from ..jobs.video import VideoUsageError, output_stems

    with connected(address):
        import ray

        spec = _spec_for_workers(spec)
        resources = {"num_gpus": 1} if wants_gpus(spec, cluster_shape()) else {}
        task = ray.remote(video_task).options(num_cpus=1, max_retries=TASK_RETRIES, **resources)
        cwd = os.getcwd()
        stems = output_stems(paths, opts.output)
        pending = {task.remote(p, cwd, spec, replace(opts, stem=stems.get(p))): p for p in paths}
        results: list[bool | None] = []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            path = pending.pop(ready[0])
            try:
                status, events = ray.get(ready[0])
            except Exception as e:  # noqa: BLE001 - retries spent: this video failed, the others go on
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
                error(f"depthcli: {path}: the cluster task failed ({type(e).__name__}: {reason})")
                results.append(False)
                continue
            if isinstance(status, tuple):
                for ref in pending:
                    ray.cancel(ref)
                if status[0] == "usage":
                    raise VideoUsageError(status[1])
                raise ClusterFailure(status[2], status[1])
            _replay(events, new_reporter, error)
            results.append(status)
        return results


def _replay(events: list, new_reporter: Callable[[int | None], Any], error: Callable[[str], None]) -> None:
    """Show a finished video's events through the driver's reporter, as a local run shows them."""
    from ..runtime.stats import FrameStats

    reporter = None
    for kind, value in events:
        if kind == "reporter":
            reporter = new_reporter(value)
        elif kind == "error":
            error(value)
        elif reporter is None:
            continue
        elif kind == "info":
            reporter.info(value)
        elif kind == "frame":
            import json

            d = json.loads(value)
            d["input_hw"], d["processed_hw"] = tuple(d["input_hw"]), tuple(d["processed_hw"])
            reporter.done(FrameStats(**d))
        elif kind == "close":
            reporter.close(wall_s=value)
