"""CPU threads: the model gets the physical cores; OpenCV's own pools stay out of its way.

Hyper-threads share a core's matrix units, so torch runs fastest with one thread per physical
core. Decoding, resizing and encoding run in depthcli's worker threads beside the model; if
OpenCV also fanned each call out over every core, those calls would preempt the model's threads
at every frame. One OpenCV thread per call keeps them to the spare cycles.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def usable_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def physical_cores() -> int:
    """Distinct (package, core) pairs among the CPUs this process may run on."""
    cpus = usable_cpus()
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add((topo.joinpath("physical_package_id").read_text().strip(),
                       topo.joinpath("core_id").read_text().strip()))
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores))


def inference_threads() -> int:
    """Threads for a CPU inference engine (OpenVINO): ``OMP_NUM_THREADS`` when set to a
    positive number (the same override torch honours), else the physical cores."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return physical_cores()


def configure_threads(device: str, *, torch_runs_model: bool = True) -> None:
    """Set torch and OpenCV thread counts for a run on ``device`` (environment settings such as
    OMP_NUM_THREADS, when given, win).

    When another engine (OpenVINO) runs the model, torch only upsamples the output: one thread.
    With its usual pool, the OpenMP workers of that small op keep spinning for a while after it
    and take the cores from the engine's next forward (measured: 5-10% slower frames on 2 cores).
    """
    import cv2

    on_cpu = str(device).startswith("cpu")
    torch = sys.modules.get("torch")  # set only when loaded: a cached OpenVINO model never imports it
    if torch is not None and on_cpu and not torch_runs_model:
        torch.set_num_threads(1)
    elif torch is not None and on_cpu and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(physical_cores())
    cv2.setNumThreads(1 if on_cpu else max(1, len(usable_cpus()) // 2))
