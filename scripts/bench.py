#!/usr/bin/env python
"""Speed and memory of depthcli against transformers' Depth-Anything, on identical weights.

Every configuration (implementation x model x size x precision) runs in a fresh subprocess
(``bench.py --worker JSON``) that prints one JSON result line. Why a process each:
- peak memory: ``ru_maxrss`` / ``VmHWM`` only ever grow within a process, and a model loaded
  earlier, or the allocator's cached blocks, would leak into the next configuration's numbers;
- fairness: oneDNN primitive caches, the CUDA caching allocator and torch's thread pool start
  cold for everyone, so the order of the table does not favour anyone.

Rows: depthcli (its own network from a transformers-format folder, built with
``runtime.loading.build_predictor`` on ``--backend``, default auto = OpenVINO on the CPU, and timed
through its predictor: the forward alone), transformers ``DepthAnythingForDepthEstimation`` with
its default SDPA attention, the same with ``attn_implementation="eager"`` (an explicit
softmax(q k^T) v, as the original Depth-Anything code computes it: "plain attention
(original-style)"), and what a CPU user who exports the model would run: the transformers model
exported to ONNX at the row's fixed shape (``torch.onnx.export(..., opset_version=17,
dynamo=False)``) under ONNX Runtime (fp32) and OpenVINO (f32 / bf16). Low precision for
transformers is measured two ways, autocast around fp32 weights (how most people run it) and
the model held in bf16/fp16; the ratio is taken against the faster of the two.

Run ``python scripts/bench.py --help``; scripts/README.md explains every column.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from depthcli.runtime.threads import physical_cores

SCRIPT = Path(__file__).resolve()
RESULT_PREFIX = "BENCH_RESULT "
MIB = 2**20

QUICK_MODELS = ["vits"]
QUICK_SIZES = ["518x518", "518x924"]
DEFAULT_MODELS = ["vits", "vitb"]
DEFAULT_SIZES = ["252x336", "518x518", "518x924", "1036x1036"]
DEFAULT_PRECISIONS_CPU = ["fp32", "bf16"]
DEFAULT_PRECISIONS_CUDA = ["fp32", "bf16", "fp16"]
MEMORY_CURVE_SIZES = [518, 1036, 1512, 1904]
GPU_TABLE_SIZES = [252, 392, 504, 756, 1036, 1428, 1904]
VIDEO_SIZE_WH = (1280, 720)
VIDEO_FPS = 30.0
VIDEO_TARGET_RATIO = 0.95
ROWS_EXPLAINED = (
    "ms: median forward time. ratio > 1: depthcli faster (low precision: against the peer's faster "
    "variant). ORT = ONNX Runtime fp32 and OV-ONNX = OpenVINO (f32 or bf16 asked for explicitly) on the "
    "transformers model exported to ONNX at the row's fixed shape (opset 17). depthcli is timed through its "
    "predictor on --backend (the forward alone). Memory: peak during the timed forwards, `(+N)` = above "
    "the loaded model. Low-precision "
    "peer cells read `autocast ... / held ...`. The error column compares with transformers fp32 on the "
    "same weights; at sizes other than 518x518 the position-encoding resize differs by design (depthcli "
    "follows the original's scale_factor formula, transformers passes the target size), so a "
    "1e-3..1e-2 difference there is expected.")

PEERS = ("ort", "ov-onnx", "transformers", "plain")  # peer implementations, in table order
ONNX_PEERS = ("ort", "ov-onnx")  # run the ONNX export of the transformers model
IMPL_LABEL = {
    "depthcli": "depthcli",
    "transformers": "transformers (sdpa)",
    "plain": "plain attention (original-style)",
    "ort": "ONNX Runtime (ONNX export)",
    "ov-onnx": "OpenVINO (ONNX export)",
    "export": "ONNX export of transformers",
}
ATTENTION = {"transformers": "sdpa", "plain": "eager"}


# ======================================================================================= jobs
@dataclass
class Job:
    """One measurement, run in its own process. Serialised to JSON on the command line."""

    kind: str  # "forward" (model-only timing), "video" (end-to-end stream) or "export" (ONNX file)
    impl: str  # "depthcli", "transformers" (sdpa), "plain" (eager attention), "ort", "ov-onnx", "export"
    weights: str  # transformers folder or depthcli .safetensors
    mode: str  # fp32 | bf16 | fp16 (model held in that dtype) | bf16-autocast | fp16-autocast
    device: str
    threads: int
    height: int = 518
    width: int = 518
    warmup: int = 1
    repeats: int = 5
    save_output: str | None = None  # .npy path for the float32 depth, for error checks
    video: str | None = None  # kind == "video": input file ...
    video_out: str | None = None  # ... and where the rendered depth video goes
    size: int = 518  # kind == "video": DepthPredictor's --size
    attention: str = "auto"  # depthcli's attention backend: auto, sdpa or chunked
    backend: str = "auto"  # depthcli's inference backend: auto, torch or openvino
    onnx: str | None = None  # the ONNX export the ONNX peers run (written by an "export" job)

    def label(self) -> str:
        if self.mode.endswith("-autocast"):
            mode = self.mode.replace("-autocast", " autocast")
        elif self.mode != "fp32" and self.impl not in ("depthcli", *ONNX_PEERS):
            mode = f"{self.mode} held"
        else:
            mode = self.mode
        return f"{IMPL_LABEL[self.impl]} {self.height}x{self.width} {mode}"


# ===================================================================================== worker
def _proc_status_kib(key: str) -> float | None:
    """A ``Vm*`` line of /proc/self/status in KiB (Linux only)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM, and ru_maxrss with it) to the current RSS,
    so the peak that follows is the forward pass's, not model loading's (which can be higher:
    a checkpoint read plus a dtype-converted copy). Linux >= 4.0; False elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _lifetime_peak_rss_mib() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


class MemoryProbe:
    """Peak memory of the measured phase: process RSS on the CPU, allocator peak on CUDA."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.loaded_mib = 0.0
        self.reset_ok = False

    def start(self) -> None:
        import gc

        import torch

        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.loaded_mib = torch.cuda.memory_allocated() / MIB
        else:
            rss = _proc_status_kib("VmRSS")
            self.loaded_mib = rss / 1024 if rss is not None else _lifetime_peak_rss_mib()
            self.reset_ok = _reset_peak_rss()

    def finish(self) -> dict[str, Any]:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / MIB
            return {"mem_kind": "cuda-allocated", "loaded_mib": self.loaded_mib, "peak_mib": peak,
                    "above_mib": peak - self.loaded_mib,
                    "reserved_peak_mib": torch.cuda.max_memory_reserved() / MIB}
        hwm = _proc_status_kib("VmHWM")
        peak = hwm / 1024 if (hwm is not None and self.reset_ok) else _lifetime_peak_rss_mib()
        return {"mem_kind": "rss" if self.reset_ok else "rss-lifetime", "loaded_mib": self.loaded_mib,
                "peak_mib": peak, "above_mib": max(0.0, peak - self.loaded_mib),
                "ru_maxrss_mib": _lifetime_peak_rss_mib()}


def _dtype(mode: str) -> Any:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[mode.split("-")[0]]


def _load_transformers(job: Job) -> tuple[Any, str]:
    """A transformers model on the job's device, with the backbone attention the job asks for.
    Returns (model, the attention implementation the backbone actually uses)."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    attn = ATTENTION[job.impl]
    try:  # transformers >= 4.5x: per-sub-config attention; the top model itself has no attention
        model = DepthAnythingForDepthEstimation.from_pretrained(
            job.weights, attn_implementation={"backbone_config": attn})
    except (TypeError, ValueError):
        config = DepthAnythingConfig.from_pretrained(job.weights)
        config.backbone_config._attn_implementation = attn
        model = DepthAnythingForDepthEstimation.from_pretrained(job.weights, config=config)
    actual = str(getattr(model.backbone.config, "_attn_implementation", "unknown"))
    held = torch.float32 if job.mode.endswith("autocast") else _dtype(job.mode)
    return model.to(device=job.device, dtype=held).eval(), actual


def _depthcli_predictor(job: Job) -> Any:
    """depthcli's predictor for the job, built as the CLI builds it (backend, precision)."""
    from depthcli.runtime.loading import build_predictor
    from depthcli.runtime.spec import PredictorSpec

    predictor = build_predictor(PredictorSpec(model=job.weights, device=job.device, precision=job.mode,
                                              size=job.size, backend=job.backend))
    for note in predictor.notes:
        print(f"note: {note}", file=sys.stderr)
    return predictor


def _forward_fn(job: Job) -> tuple[Callable[[], Any], dict[str, Any]]:
    """Load the model for ``job`` and return a no-argument forward on the prepared input. A
    forward may return ``(output, ms)``: its own timing of the network alone."""
    import torch
    from random_models import sample_input

    x = sample_input(job.height, job.width).to(job.device)
    info: dict[str, Any] = {}
    if job.impl == "depthcli":
        if job.mode.endswith("autocast"):
            raise ValueError("depthcli is measured with the model held in low precision, not autocast")
        from depthcli.runtime.predictor import Prepared

        predictor = _depthcli_predictor(job)
        info["dtype"] = str(predictor.dtype).removeprefix("torch.")
        info["backend"] = predictor.backend.describe()
        prepared = Prepared("bench", x.cpu().numpy(), (job.height, job.width), 0.0)

        def forward() -> Any:
            # through the predictor, timed as it times itself: the forward alone (staging the
            # input and, on OpenVINO, compiling a shape's own model happen outside it)
            prediction = predictor.infer(prepared)
            return torch.from_numpy(prediction.depth_hw)[None], prediction.stats.infer_ms

        return forward, info
    if job.impl in ONNX_PEERS:
        return _onnx_forward_fn(job, x.cpu().numpy()), info

    model, actual = _load_transformers(job)
    info["attn_implementation"] = actual
    info["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    if job.mode.endswith("autocast"):
        device_type = torch.device(job.device).type
        dtype = _dtype(job.mode)
        info["autocast"] = str(dtype).removeprefix("torch.")

        def forward() -> Any:
            with torch.autocast(device_type, dtype=dtype):
                return model(pixel_values=x).predicted_depth

        return forward, info
    x = x.to(_dtype(job.mode))
    return (lambda: model(pixel_values=x).predicted_depth), info


def _onnx_forward_fn(job: Job, x: Any) -> Callable[[], Any]:
    """ONNX Runtime (fp32) or OpenVINO (f32/bf16, asked for explicitly) on the ONNX export."""
    import torch

    assert job.onnx
    if job.impl == "ort":
        if job.mode != "fp32":
            raise ValueError("ONNX Runtime is measured in fp32 only")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = job.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(job.onnx, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda: torch.from_numpy(session.run(None, {name: x})[0])
    import openvino as ov

    compiled = ov.Core().compile_model(job.onnx, "CPU", {
        "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[job.mode],
        "INFERENCE_NUM_THREADS": job.threads, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()

    def forward() -> Any:
        request.infer({0: x})
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

    return forward


def run_export_job(job: Job) -> dict[str, Any]:
    """The transformers model exported to ONNX at the job's fixed shape, as Depth-Anything-ONNX
    and most CPU users do it."""
    import warnings

    import torch

    model, _ = _load_transformers(Job("forward", "transformers", job.weights, "fp32", "cpu", job.threads))

    class DepthOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.model(pixel_values=pixel_values).predicted_depth

    assert job.onnx
    t0 = time.perf_counter()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(DepthOnly().eval(), (torch.zeros(1, 3, job.height, job.width),), job.onnx,
                          opset_version=17, dynamo=False, input_names=["pixel_values"],
                          output_names=["predicted_depth"])
    return {"export_s": time.perf_counter() - t0, "bytes": Path(job.onnx).stat().st_size}


def run_forward_job(job: Job) -> dict[str, Any]:
    """Model-only time per frame: median of ``repeats`` forwards after ``warmup`` ones."""
    import torch

    forward, info = _forward_fn(job)
    cuda = job.device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    probe = MemoryProbe(job.device)
    probe.start()
    times_ms: list[float] = []
    out = None
    with torch.inference_mode():
        for i in range(job.warmup + job.repeats):
            sync()
            t0 = time.perf_counter()
            out = forward()
            sync()
            elapsed_ms = (time.perf_counter() - t0) * 1000
            if isinstance(out, tuple):  # (output, the forward's own time)
                out, elapsed_ms = out
            if i >= job.warmup:
                times_ms.append(elapsed_ms)
    result = {**info, **probe.finish(), "times_ms": times_ms,
              "median_ms": statistics.median(times_ms) if times_ms else None}
    if job.save_output and out is not None:
        import numpy as np

        np.save(job.save_output, out.detach().float().cpu().numpy())
    return result


def run_video_job(job: Job) -> dict[str, Any]:
    """End-to-end depth video: decode -> preprocess -> model -> render -> encode, through
    ``stream_depth`` exactly as the CLI wires it, against the model's own median speed."""
    import numpy as np

    from depthcli.io.render import to_color
    from depthcli.io.video.opencv import VideoReader, VideoWriter
    from depthcli.runtime.predictor import Prediction, Prepared
    from depthcli.runtime.streaming import stream_depth

    prepare_ms: list[float] = []
    predictor = _depthcli_predictor(job)
    plain_prepare = predictor.prepare

    def prepare(image_bgr: np.ndarray, name: str = "image", **options: Any) -> Prepared:
        """Records the preprocessing time of each frame (FrameStats folds it into total_ms)."""
        prepared = plain_prepare(image_bgr, name, **options)
        prepare_ms.append(prepared.prepare_ms)
        return prepared

    predictor.prepare = prepare
    sink_ms: list[float] = []
    assert job.video and job.video_out
    with VideoReader(job.video) as reader:
        # one-off kernel setup and the position-encoding resize are not what a long video pays
        w, h = reader.size
        for _ in range(max(job.warmup, 2)):  # OpenVINO compiles a size's own model at its 2nd sight
            predictor(np.zeros((h, w, 3), np.uint8))
        prepare_ms.clear()
        with VideoWriter(job.video_out, reader.fps, reader.size) as writer:

            def sink(_index: int, _frame: np.ndarray, prediction: Prediction) -> None:
                t0 = time.perf_counter()
                writer.write(to_color(prediction.depth_hw))
                sink_ms.append((time.perf_counter() - t0) * 1000)

            result = stream_depth(reader, predictor, sink)
    stats = result.stats
    if not stats:
        raise RuntimeError("no frame came through the stream")
    infer = statistics.median(s.infer_ms for s in stats)
    prepare = statistics.median(prepare_ms)
    return {"frames": result.frames, "wall_s": result.wall_s, "model_fps": result.model_fps,
            "backend": predictor.backend.describe(),
            "end_to_end_fps": result.end_to_end_fps,
            "ratio": result.end_to_end_fps / result.model_fps if result.model_fps else None,
            "processed_hw": list(stats[0].processed_hw),
            # per-frame stage costs (medians): on few cores the threads that overlap with the
            # model compete with it for the same cores, so these bound the end-to-end ratio
            "median_infer_ms": infer, "median_prepare_ms": prepare,
            "median_upsample_ms": statistics.median(
                s.total_ms - s.infer_ms - p for s, p in zip(stats, prepare_ms, strict=False)),
            "median_sink_ms": statistics.median(sink_ms), "frames_written": writer.frames_written}


def worker_main(payload: str) -> int:
    """Entry point of a child process: run one job, print one ``BENCH_RESULT {json}`` line."""
    job = Job(**json.loads(payload))
    import torch

    torch.set_num_threads(job.threads)
    if job.impl == "depthcli" and job.attention != "auto":
        from depthcli.model.dinov2.attention import Attention

        Attention.backend = job.attention  # a class-wide switch, meant for benchmarks and tests
    try:
        runner = {"video": run_video_job, "export": run_export_job}.get(job.kind, run_forward_job)
        result = runner(job)
        result["ok"] = True
    except Exception as e:  # noqa: BLE001 - reported in the table, not a crash of the whole run
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        result = {"ok": False, "error": f"{type(e).__name__}: {first}"}
    result["threads"] = torch.get_num_threads()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


# ===================================================================================== parent
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    """The SIMD features that decide fp32/bf16 speed on the CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                wanted = ["avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16"]
                return ", ".join(f for f in wanted if f in have) or "none of avx2/avx512/amx"
    except OSError:
        pass
    return "unknown"


def versions() -> dict[str, str]:
    import torch

    import depthcli

    out = {"python": platform.python_version(), "torch": torch.__version__, "depthcli": depthcli.__version__}
    for name in ("transformers", "openvino", "onnxruntime"):
        try:
            out[name] = __import__(name).__version__.split("-")[0]
        except ImportError:
            out[name] = "not installed"
    return out


def _gpu_name() -> str:
    """Asked of nvidia-smi first: a CUDA context in this parent process would hold GPU memory
    that the workers' nvidia-smi readings (in the all-processes fallback) then include."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        if out:
            return out.splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "none"


def machine_header(args: argparse.Namespace, command: str) -> list[str]:
    v = versions()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    lines = [
        "# depthcli benchmark",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- CPU: {cpu_model()} ({os.cpu_count()} logical CPUs, {physical_cores()} physical cores usable; "
        f"{cpu_flags()})",
        f"- device: {args.device}" + (f" ({_gpu_name()})" if args.device == "cuda" else ""),
        f"- threads: torch.set_num_threads({args.threads}) in every worker",
        f"- depthcli backend: {args.backend} (--backend), attention kernel (torch): {args.attention}",
        f"- versions: python {v['python']}, torch {v['torch']}, transformers {v['transformers']}, "
        f"openvino {v['openvino']}, onnxruntime {v['onnxruntime']}, depthcli {v['depthcli']}",
        f"- timing: median of {args.repeats} forwards after {args.warmup} warm-up, each configuration "
        f"in a fresh process" + (f"; {args.rounds} rounds of each size's configurations in rotated order, "
                                 f"the median of the rounds reported" if args.rounds > 1 else ""),
        f"- load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        + (" (busy machine: numbers are noisy)" if load[0] > 0.5 * physical_cores() else ""),
        f"- command: `{command}`",
    ]
    return lines


class GpuMemorySampler:
    """Polls ``nvidia-smi --query-compute-apps`` while a worker runs and keeps the worker's
    largest ``used_memory``: what the driver charges the process (CUDA context, allocator
    cache and all), which is what another program on the same GPU can no longer have."""

    INTERVAL_S = 0.1

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mib: float | None = None  # the worker's own entry
        self.peak_all_mib: float | None = None  # all compute apps: used when pids do not match
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> GpuMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        cmd = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            try:
                text = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout
            except (OSError, subprocess.SubprocessError):
                return
            total = 0.0
            for line in text.strip().splitlines():
                parts = [p.strip() for p in line.split(",")]
                if len(parts) != 2 or not parts[1].replace(".", "").isdigit():
                    continue
                used = float(parts[1])
                total += used
                if parts[0] == str(self.pid):
                    self.peak_mib = max(self.peak_mib or 0.0, used)
            if total:
                self.peak_all_mib = max(self.peak_all_mib or 0.0, total)
            self._stop.wait(self.INTERVAL_S)


def run_job(job: Job, timeout_s: float, *, sample_gpu: bool = False) -> dict[str, Any]:
    """Run ``job`` in a fresh interpreter and return its result dict (``ok`` False on failure)."""
    env = dict(os.environ)
    # size OpenMP's pool before torch starts it; set_num_threads in the worker then agrees
    env.update(OMP_NUM_THREADS=str(job.threads), MKL_NUM_THREADS=str(job.threads),
               TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error")
    cmd = [sys.executable, str(SCRIPT), "--worker", json.dumps(asdict(job))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    sampler = GpuMemorySampler(proc.pid) if sample_gpu else None
    try:
        if sampler:
            sampler.__enter__()
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return {"ok": False, "error": f"timed out after {timeout_s:.0f} s"}
    finally:
        if sampler:
            sampler.__exit__()
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
            if sampler:
                result["smi_mib"] = sampler.peak_mib
                result["smi_all_mib"] = sampler.peak_all_mib
            return result
    tail = [line for line in err.strip().splitlines() if line.strip()][-1:]
    tail = tail or [f"exit code {proc.returncode}"]
    return {"ok": False, "error": f"worker died: {tail[0][:200]}"}


def parse_size(text: str) -> tuple[int, int]:
    """``518x924`` (H x W) or ``518`` (square); both multiples of 14, as the network needs."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"size must be HxW or N, got {text!r}")
    h, w = int(parts[0]), int(parts[-1])
    if h % 14 or w % 14 or h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"{text}: height and width must be positive multiples of 14")
    return h, w


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


# ------------------------------------------------------------------------------ formatting
def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "n/a"
    return f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def fmt_mem(r: dict[str, Any] | None) -> str:
    if not r or not r.get("ok"):
        return "n/a"
    return f"{r['peak_mib']:.0f} (+{r['above_mib']:.0f})"


def fmt_err(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.1e}"


def markdown_table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _ok_ms(r: dict[str, Any] | None) -> float | None:
    return r.get("median_ms") if r and r.get("ok") else None


def _why(r: dict[str, Any] | None) -> str:
    return f"failed ({r['error']})" if r and not r.get("ok") else "n/a"


# ================================================================================ benchmark
@dataclass
class Row:
    model: str
    size: tuple[int, int]
    precision: str
    results: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (impl, mode)
    max_rel_err: float | None = None  # depthcli vs transformers fp32
    peer_rel_err: float | None = None  # transformers (fastest low-precision mode) vs its fp32

    def peer_modes(self, impl: str = "transformers") -> list[str]:
        """The modes a peer is measured in for this row: transformers fp32, or autocast and
        held in low precision; ONNX Runtime fp32 only; OpenVINO-from-ONNX f32 or bf16."""
        if impl == "ort":
            return ["fp32"] if self.precision == "fp32" else []
        if impl == "ov-onnx":
            return [self.precision] if self.precision in ("fp32", "bf16") else []
        return ["fp32"] if self.precision == "fp32" else [f"{self.precision}-autocast", self.precision]

    def best(self, impl: str) -> tuple[str | None, float | None]:
        """(mode, ms) of the faster low-precision variant of a peer."""
        timed = [(m, _ok_ms(self.results.get((impl, m)))) for m in self.peer_modes(impl)]
        timed = [(m, t) for m, t in timed if t is not None]
        return min(timed, key=lambda mt: mt[1]) if timed else (None, None)

    def peer_ms_cell(self, impl: str) -> str:
        modes = self.peer_modes(impl)
        if not modes:
            return "-"
        if len(modes) == 1:
            r = self.results.get((impl, modes[0]))
            return fmt_ms(_ok_ms(r)) if _ok_ms(r) is not None else _why(r)
        cells = []
        for mode, tag in zip(self.peer_modes(), ("autocast", "held"), strict=True):
            r = self.results.get((impl, mode))
            cells.append(f"{tag} {fmt_ms(_ok_ms(r))}" if _ok_ms(r) is not None else f"{tag} {_why(r)}")
        return " / ".join(cells)

    def peer_mem_cell(self, impl: str) -> str:
        modes = self.peer_modes(impl)
        if len(modes) <= 1:
            return fmt_mem(self.results.get((impl, modes[0]))) if modes else "-"
        return " / ".join(f"{tag} {fmt_mem(self.results.get((impl, m)))}"
                          for m, tag in zip(self.peer_modes(), ("autocast", "held"), strict=True))

    def ratio(self, impl: str) -> str:
        mine = _ok_ms(self.results.get(("depthcli", self.precision)))
        _, theirs = self.best(impl)
        return f"{theirs / mine:.2f}" if mine and theirs else "n/a"


def merge_rounds(before: dict[str, Any] | None, result: dict[str, Any]) -> dict[str, Any]:
    """One configuration measured again in a later round (``--rounds``): its time is the median
    of the rounds' medians, its memory the highest peak. A round that failed fails the cell."""
    if before is None:  # the first round (or a job measured once: an export)
        timed = result.get("ok") and result.get("median_ms") is not None
        return {**result, "rounds_ms": [result["median_ms"]]} if timed else result
    if not before.get("ok"):
        return before
    if not result.get("ok"):
        return {**result, "error": f"round {len(before['rounds_ms']) + 1}: {result['error']}"}
    rounds_ms = [*before["rounds_ms"], result["median_ms"]]
    merged = {**before, "rounds_ms": rounds_ms, "median_ms": statistics.median(rounds_ms),
              "times_ms": [*before["times_ms"], *result["times_ms"]]}
    for key in ("peak_mib", "above_mib", "loaded_mib", "ru_maxrss_mib"):
        if key in result and key in before:
            merged[key] = max(before[key], result[key])
    return merged


Outputs = dict[tuple[str, str], Path]  # (impl, mode) -> saved float32 depth of one (model, size)


def compute_errors(row: Row, outputs: Outputs) -> None:
    """Fill the row's error columns from the saved outputs; transformers fp32 is the reference."""
    import numpy as np
    import torch
    from random_models import relative_errors

    def load(key: tuple[str, str | None]) -> torch.Tensor | None:
        path = outputs.get(key) if key[1] else None  # type: ignore[arg-type]
        return torch.from_numpy(np.load(path)) if path is not None and path.exists() else None

    ref = load(("transformers", "fp32"))
    if ref is None:
        return
    if (mine := load(("depthcli", row.precision))) is not None:
        row.max_rel_err = relative_errors(mine, ref)[0]
    faster_mode = row.best("transformers")[0]
    if row.precision != "fp32" and (theirs := load(("transformers", faster_mode))) is not None:
        row.peer_rel_err = relative_errors(theirs, ref)[0]


def benchmark_rows(args: argparse.Namespace, weights: dict[str, Path], peers: bool, workdir: Path,
                   log: Callable[[str], None]) -> list[Row]:
    """Plan every (model, size, precision, implementation, mode) job, run each in its own
    process, and fold the results into one Row per (model, size, precision)."""
    rows: list[Row] = []
    plan: list[tuple[Row, Job]] = []
    outputs: dict[tuple[str, int, int], Outputs] = {}

    onnx_peers = [impl for impl in ONNX_PEERS if impl in args.peer_set and args.device == "cpu"]

    def add(row: Row, impl: str, mode: str, warmup: int, repeats: int, onnx: str | None = None) -> None:
        model, (h, w) = row.model, row.size
        out = workdir / f"out-{model}-{h}x{w}-{impl}-{mode}.npy"
        outputs.setdefault((model, h, w), {})[(impl, mode)] = out
        plan.append((row, Job("forward", impl, str(weights[model]), mode, args.device, args.threads, h, w,
                              warmup, repeats, save_output=str(out), attention=args.attention,
                              backend=args.backend, size=min(h, w), onnx=onnx)))

    for model in args.models:
        for h, w in args.sizes:
            onnx = str(workdir / f"{model}-{h}x{w}.onnx") if peers and onnx_peers else None
            if onnx:  # exported once per (model, size), deleted after the size's last peer ran
                plan.append((Row(model, (h, w), "export"), Job("export", "export", str(weights[model]), "fp32",
                                                                "cpu", args.threads, h, w, onnx=onnx)))
            if args.device == "cpu":  # two untimed depthcli calls per precision first (the first converts
                for precision in args.precisions * 2:  # the model, the second exports the size's static
                    plan.append((Row(model, (h, w), "prime"),  # compiled model): the rounds import it, as
                                 Job("forward", "depthcli", str(weights[model]), precision,  # a user's later runs
                                     args.device, args.threads, h, w, 0, 1, backend=args.backend, size=min(h, w))))
            first = len(plan)
            for precision in args.precisions:
                row = Row(model, (h, w), precision)
                rows.append(row)
                add(row, "depthcli", precision, args.warmup, args.repeats)
                for impl in PEERS if peers else ():
                    if impl in args.peer_set and (impl not in ONNX_PEERS or onnx):
                        for mode in row.peer_modes(impl):
                            add(row, impl, mode, args.warmup, args.repeats, onnx if impl in ONNX_PEERS else None)
            if peers and "fp32" not in args.precisions:
                # the error reference is not otherwise measured: one untimed-quality forward
                add(Row(model, (h, w), "reference"), "transformers", "fp32", 0, 1)
            group = plan[first:]  # this size's forwards: again in later rounds, each in a new order
            for r in range(1, args.rounds if group else 1):
                shift = r % len(group)
                plan.extend(group[shift:] + group[:shift])
    last_use = {job.onnx: i for i, (_, job) in enumerate(plan) if job.onnx}
    for i, (row, job) in enumerate(plan, 1):
        t0 = time.perf_counter()
        if job.onnx and job.kind != "export" and not Path(job.onnx).exists():
            result = {"ok": False, "error": "no ONNX export (it failed above)"}
        else:
            result = run_job(job, args.worker_timeout)
        row.results[(job.impl, job.mode)] = merge_rounds(row.results.get((job.impl, job.mode)), result)
        if job.kind == "export":
            what = (f"{result['export_s']:.0f} s, {result['bytes'] / MIB:.0f} MiB" if result.get("ok")
                    else result["error"])
        else:
            what = (f"{fmt_ms(result.get('median_ms'))} ms, peak {fmt_mem(result)} MiB" if result.get("ok")
                    else result["error"])
        if result.get("backend"):
            what += f" [{result['backend']}]"
        if row.precision == "prime":
            what += " (not counted: fills the converted-model cache, as a user's first runs do)"
        log(f"[{i}/{len(plan)}] {job.label()}: {what} ({time.perf_counter() - t0:.0f} s)")
        if job.onnx and last_use[job.onnx] == i - 1:
            Path(job.onnx).unlink(missing_ok=True)
        if (attn := result.get("attn_implementation")) and attn != ATTENTION.get(job.impl):
            log(f"  warning: asked for {ATTENTION[job.impl]} attention, the backbone uses {attn}")
    for row in rows:
        compute_errors(row, outputs[(row.model, *row.size)])
    for paths in outputs.values():
        for p in paths.values():
            p.unlink(missing_ok=True)
    return rows


PEER_SHORT = {"ort": "ORT", "ov-onnx": "OV-ONNX", "transformers": "transformers", "plain": "plain-attention"}


def rows_table(rows: list[Row], peers: list[str], mem_label: str) -> list[str]:
    header = ["model", "size (HxW)", "precision", "depthcli ms"]
    header += [f"{PEER_SHORT[p]} ms" for p in peers]
    header += [f"{PEER_SHORT[p]}/depthcli" for p in peers]
    header += [f"depthcli peak {mem_label} MiB"]
    header += [f"{PEER_SHORT[p]} peak {mem_label} MiB" for p in peers]
    if "transformers" in peers:
        header += ["max rel err vs transformers fp32 (depthcli / transformers)"]
    body = []
    for row in rows:
        mine = row.results.get(("depthcli", row.precision))
        cells = [row.model, f"{row.size[0]}x{row.size[1]}", row.precision,
                 fmt_ms(_ok_ms(mine)) if _ok_ms(mine) is not None else _why(mine)]
        cells += [row.peer_ms_cell(p) for p in peers]
        cells += [row.ratio(p) if row.peer_modes(p) else "-" for p in peers]
        cells.append(fmt_mem(mine))
        cells += [row.peer_mem_cell(p) for p in peers]
        if "transformers" in peers:
            err = fmt_err(row.max_rel_err)
            if row.precision != "fp32":
                err += f" / {fmt_err(row.peer_rel_err)}"
            cells.append(err)
        body.append(cells)
    return markdown_table(header, body)


# =================================================================================== video
def make_synthetic_video(path: Path, frames: int, size_wh: tuple[int, int] = VIDEO_SIZE_WH) -> Path:
    """A 1280x720 mp4 with texture and motion, so decoding and encoding cost what real footage
    costs (a flat frame would compress to nothing and flatter the end-to-end number)."""
    import cv2
    import numpy as np

    w, h = size_wh
    rng = np.random.default_rng(0)
    texture = cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h),
                         interpolation=cv2.INTER_CUBIC)
    grad = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for i in range(frames):
            moving = 0.6 * np.roll(texture, 7 * i, axis=1) + 0.4 * np.roll(grad, 11 * i, axis=1)
            frame = moving.astype(np.uint8)
            cx, cy = int(w / 2 + w / 3 * math.sin(i / 9)), int(h / 2 + h / 4 * math.cos(i / 7))
            cv2.circle(frame, (cx, cy), h // 6, (40, 200, 90), -1)
            cv2.rectangle(frame, (w // 10 + 5 * i, h // 8), (w // 10 + 5 * i + w // 8, h // 8 + h // 5),
                          (200, 60, 30), -1)
            writer.write(frame)
    finally:
        writer.release()
    return path


WEBCAM_SIZE_WH = (640, 480)
WEBCAM_TARGET_FPS = 12.0


def webcam_section(args: argparse.Namespace, weights: Path, workdir: Path, log: Callable[[str], None]) -> list[str]:
    """``depthcli webcam --source <640x480 file> --no-window --size 252 --bf16``, the real command
    in a subprocess (capture thread, prepare, forward, upsample, colour, side by side), frames
    per second from its own summary line; one short run first so the conversion is cached."""
    import re

    clip = make_synthetic_video(workdir / "webcam.mp4", args.webcam_frames, WEBCAM_SIZE_WH)
    base = [sys.executable, "-m", "depthcli", "webcam", "--source", str(clip), "--no-window", "--size", "252",
            "--bf16", "--model", str(weights), "--backend", args.backend]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))  # torch and OpenVINO both honour it
    subprocess.run([*base, "--max-frames", "3", "-q"], capture_output=True, env=env, timeout=args.worker_timeout)
    t0 = time.perf_counter()
    proc = subprocess.run(base, capture_output=True, text=True, env=env, timeout=args.worker_timeout)
    lines_err = [line for line in proc.stderr.splitlines() if line.strip()]
    summary = next((line for line in reversed(lines_err) if " frames/s end to end" in line), "")
    m = re.search(r"median (\d+) ms/frame inference, ([\d.]+) frames/s end to end, peak \w+ (\d+) MiB(?:, (.+))?",
                  summary)
    if proc.returncode != 0 or not m:
        why = lines_err[-1] if lines_err else f"exit {proc.returncode}"
        log(f"[webcam] failed: {why}")
        body = [["vits", "failed", why, "", "", ""]]
    else:
        fps = float(m.group(2))
        log(f"[webcam] {fps:.1f} fps end to end ({time.perf_counter() - t0:.0f} s)")
        body = [["vits", m.group(4) or "?", m.group(1), f"{fps:.1f}",
                 f"{'meets' if fps >= WEBCAM_TARGET_FPS else 'BELOW'} {WEBCAM_TARGET_FPS:g}", m.group(3)]]
    w, h = WEBCAM_SIZE_WH
    lines = ["", f"## Webcam: `depthcli webcam --source <{w}x{h} file> --no-window --size 252 --bf16`", "",
             f"The CLI itself on a {args.webcam_frames}-frame synthetic {w}x{h} clip (336x252 network input): "
             "capture thread, preprocessing, forward, upsample, colour and side-by-side view, one frame after "
             "the other; fps from its summary line.", ""]
    return lines + markdown_table(["model", "backend", "median forward ms", "end-to-end fps",
                                   f"target >= {WEBCAM_TARGET_FPS:g} fps", "peak RSS MiB"], body)


def video_section(args: argparse.Namespace, weights: Path, workdir: Path,
                  log: Callable[[str], None]) -> list[str]:
    video = make_synthetic_video(workdir / "synthetic.mp4", args.video_frames)
    precisions = [p for p in args.video_precisions if not (p == "fp16" and args.device == "cpu")]
    body = []
    for precision in precisions:
        job = Job("video", "depthcli", str(weights), precision, args.device, args.threads, warmup=1,
                  video=str(video), video_out=str(workdir / f"depth-{precision}.mp4"), size=args.video_size,
                  attention=args.attention)
        t0 = time.perf_counter()
        r = run_job(job, args.worker_timeout)
        if not r.get("ok"):
            log(f"[video {precision}] failed: {r['error']}")
            body.append([args.video_model, precision, "failed", r["error"], "", "", "", "", ""])
            continue
        log(f"[video {precision}] model {r['model_fps']:.2f} fps, end to end {r['end_to_end_fps']:.2f} fps "
            f"({time.perf_counter() - t0:.0f} s)")
        ratio = r["ratio"]
        verdict = "meets" if ratio is not None and ratio >= VIDEO_TARGET_RATIO else "BELOW"
        ph, pw = r["processed_hw"]
        stages = " / ".join(f"{r[k]:.0f}" for k in ("median_infer_ms", "median_prepare_ms",
                                                     "median_upsample_ms", "median_sink_ms"))
        body.append([args.video_model, precision, f"{r['frames']}", f"{ph}x{pw}", f"{r['model_fps']:.2f}",
                     f"{r['end_to_end_fps']:.2f}", f"{ratio:.3f}" if ratio is not None else "n/a",
                     f"{verdict} {VIDEO_TARGET_RATIO}", stages])
    w, h = VIDEO_SIZE_WH
    lines = ["", f"## End-to-end video ({w}x{h} synthetic mp4, --size {args.video_size})", "",
             "`stream_depth` with a `DepthPredictor`, a sink that renders with `to_color` and encodes with "
             "`VideoWriter`; decode and preprocessing overlap the model in a worker thread. Model-only fps "
             "is 1000 / median forward ms of the same run; one warm-up frame before the stream. Stage times are "
             "medians; preprocess and render+encode run in threads beside the model, so with no spare "
             "core they add to the frame time.", ""]
    lines += markdown_table(["model", "precision", "frames", "network input (HxW)", "model-only fps",
                             "end-to-end fps", "end-to-end / model", f"target >= {VIDEO_TARGET_RATIO}",
                             "ms/frame: forward / preprocess / upsample / render+encode"], body)
    return lines


# ============================================================================ memory curve
def memory_curve_section(args: argparse.Namespace, weights: Path, log: Callable[[str], None]) -> list[str]:
    body, points = [], []
    for side in args.curve_sizes:
        job = Job("forward", "depthcli", str(weights), "fp32", args.device, args.threads, side, side,
                  warmup=0, repeats=1, attention=args.attention)
        r = run_job(job, args.worker_timeout)
        if not r.get("ok"):
            log(f"[memory {side}] failed: {r['error']}")
            body.append([f"{side}x{side}", f"{side * side / 1e6:.2f}", "failed", r["error"], "", ""])
            continue
        mp = side * side / 1e6
        slope = "" if not points else f"{(r['above_mib'] - points[-1][1]) / (mp - points[-1][0]):.0f}"
        points.append((mp, r["above_mib"]))
        log(f"[memory {side}x{side}] {fmt_mem(r)} MiB")
        body.append([f"{side}x{side}", f"{mp:.2f}", f"{r['peak_mib']:.0f}", f"{r['above_mib']:.0f}",
                     f"{r['above_mib'] / mp:.0f}", slope])
    label = "GPU allocated" if args.device == "cuda" else "RSS"
    lines = ["", f"## Memory scaling: depthcli {args.curve_model} fp32, one process per size", "",
             "Linear in pixels when MiB per megapixel stays flat (neither SDPA nor the chunked kernel "
             "builds the tokens x tokens attention matrix; the DPT head's full-resolution maps "
             "dominate).", ""]
    header = ["size", "megapixels", f"peak {label} MiB", "above loaded model MiB",
              "MiB per megapixel (above model)", "MiB per extra megapixel (vs previous)"]
    lines += markdown_table(header, body)
    return lines


# =============================================================================== GPU table
def gpu_table(args: argparse.Namespace, weights: Path, log: Callable[[str], None]) -> list[str]:
    """vitl (by default) fp16, square inputs, depthcli vs transformers held in fp16; process GPU
    memory as nvidia-smi reports it plus the allocator's own peak."""
    impls = ["depthcli"] + (["transformers"] if args.peers else [])
    body = []
    for side in args.gpu_sizes:
        res: dict[str, dict[str, Any]] = {}
        for impl in impls:
            job = Job("forward", impl, str(weights), args.gpu_precision, args.device, args.threads,
                      side, side, args.warmup, args.repeats, attention=args.attention)
            res[impl] = r = run_job(job, args.worker_timeout, sample_gpu=args.device == "cuda")
            what = f"{fmt_ms(r['median_ms'])} ms" if r.get("ok") else r["error"]
            log(f"[gpu {side}x{side} {impl}] {what}")

        def smi(r: dict[str, Any]) -> str:
            if not r.get("ok"):
                return "n/a"
            if r.get("smi_mib") is not None:
                return f"{r['smi_mib']:.0f}"
            return f"{r['smi_all_mib']:.0f}*" if r.get("smi_all_mib") is not None else "n/a"

        def peak(r: dict[str, Any]) -> str:
            return f"{r['peak_mib']:.0f}" if r.get("ok") else "n/a"

        mine, theirs = _ok_ms(res["depthcli"]), _ok_ms(res.get("transformers"))
        cells = [f"{side}x{side}", fmt_ms(mine) if mine is not None else _why(res["depthcli"])]
        if "transformers" in res:
            cells += [fmt_ms(theirs) if theirs is not None else _why(res["transformers"]),
                      f"{theirs / mine:.2f}" if mine and theirs else "n/a"]
        cells += [smi(res["depthcli"])] + ([smi(res["transformers"])] if "transformers" in res else [])
        cells += [peak(res["depthcli"])] + ([peak(res["transformers"])] if "transformers" in res else [])
        body.append(cells)
    header = ["size", "depthcli ms"]
    if args.peers:
        header += ["transformers ms", "transformers/depthcli"]
    peak_label = "max allocated MiB" if args.device == "cuda" else "peak RSS MiB (CPU dry run)"
    for what in ("GPU MiB (nvidia-smi)", peak_label):
        header += [f"depthcli {what}"] + ([f"transformers {what}"] if args.peers else [])
    lines = ["", f"## GPU table: {args.gpu_model} {args.gpu_precision}, model held in {args.gpu_precision} "
             f"(transformers: sdpa attention)", "",
             "nvidia-smi: the worker process's largest `used_memory` sampled every 0.1 s while it ran (CUDA "
             "context and allocator cache included; `*` = the sum over all compute apps, when the worker's "
             "pid was not listed, as in some containers). max allocated: `torch.cuda.max_memory_allocated` "
             "over the timed forwards, weights included.", ""]
    return lines + markdown_table(header, body)


# ==================================================================================== main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="depthcli vs transformers Depth-Anything: model-only ms/frame and peak memory on "
                    "identical random weights, end-to-end video fps, memory scaling.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="vits, 518x518 and 518x924, fp32+bf16, 2 repeats, short video, no memory curve")
    p.add_argument("--models", type=_csv, default=None,
                   help=f"comma list (default {','.join(DEFAULT_MODELS)})")
    p.add_argument("--sizes", type=lambda s: [parse_size(t) for t in _csv(s)], default=None,
                   help=f"comma list of HxW (default {','.join(DEFAULT_SIZES)})")
    p.add_argument("--precisions", type=_csv, default=None,
                   help="comma list of fp32,bf16,fp16 (default fp32,bf16; +fp16 on CUDA)")
    p.add_argument("--repeats", type=int, default=None, help="timed forwards per configuration (default 5, "
                   "20 on CUDA, 2 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed forwards first (default 2, 5 on CUDA, "
                   "1 with --quick)")
    p.add_argument("--rounds", type=int, default=None,
                   help="measure every configuration of a size this many times, each time in a new process "
                        "and a rotated order, and report the median of the rounds: slow drift of a shared "
                        "machine then hits depthcli and its peers alike (default 3 on the CPU, 1 with --quick "
                        "or CUDA)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: physical cores)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--attention", choices=["auto", "sdpa", "chunked"], default="auto",
                   help="depthcli's attention kernel (auto: SDPA, except query-chunked matmuls for "
                        "bf16/fp16 on the CPU)")
    p.add_argument("--backend", choices=["auto", "torch", "openvino"], default="auto",
                   help="depthcli's inference backend (auto: OpenVINO on the CPU when installed)")
    p.add_argument("--peers", type=_csv, default=None,
                   help="comma list of peers to run: ort, ov-onnx, transformers, plain (default: all "
                        "that are installed; ort and ov-onnx need transformers for the export)")
    p.add_argument("--no-video", action="store_true", help="skip the end-to-end video section")
    p.add_argument("--video-frames", type=int, default=None, help="frames of the synthetic video "
                   "(default 60, 20 with --quick)")
    p.add_argument("--video-size", type=int, default=518, help="DepthPredictor --size for the video")
    p.add_argument("--no-webcam", action="store_true", help="skip the webcam section (CPU only)")
    p.add_argument("--webcam-frames", type=int, default=None, help="frames of the webcam clip "
                   "(default 90, 30 with --quick)")
    p.add_argument("--no-memory-curve", action="store_true", help="skip the memory-scaling section")
    p.add_argument("--curve-sizes", type=lambda s: [int(t) for t in _csv(s)], default=MEMORY_CURVE_SIZES,
                   help="square sides for the memory curve")
    p.add_argument("--gpu-table", action="store_true",
                   help="only the GPU table: --gpu-model in --gpu-precision at --gpu-sizes, "
                        "depthcli vs transformers")
    p.add_argument("--gpu-model", default="vitl")
    p.add_argument("--gpu-precision", choices=["fp16", "bf16", "fp32"], default="fp16")
    p.add_argument("--gpu-sizes", type=lambda s: [int(t) for t in _csv(s)], default=GPU_TABLE_SIZES)
    p.add_argument("--weights-dir", type=Path, default=None,
                   help="keep the random weights here and reuse them next run (default: a temp dir)")
    p.add_argument("--seed", type=int, default=1234, help="seed of the random weights")
    p.add_argument("--worker-timeout", type=float, default=1800.0, help="seconds per configuration")
    p.add_argument("--out", type=Path, default=None, help="also write the Markdown report here")
    p.add_argument("--json", type=Path, default=None, help="also write every raw worker result here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def peer_set(args: argparse.Namespace) -> set[str]:
    """The peers to run: those asked for (default all) whose runtime is installed; the ONNX
    peers run on the CPU only."""
    wanted = set(args.peers_asked or PEERS)
    unknown = wanted - set(PEERS)
    if unknown:
        raise SystemExit(f"bench.py: unknown peer {sorted(unknown)[0]!r} ({', '.join(PEERS)})")
    if not _importable("onnxruntime"):
        wanted.discard("ort")
    if not _importable("openvino"):
        wanted.discard("ov-onnx")
    if args.device != "cpu":
        wanted -= set(ONNX_PEERS)
    return wanted


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill defaults that depend on --quick and --device; explicit flags always win."""
    cuda = args.device == "cuda"
    if cuda:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("bench.py: --device cuda, but torch sees no CUDA device")
    args.models = args.models or (QUICK_MODELS if args.quick else DEFAULT_MODELS)
    args.sizes = args.sizes or [parse_size(s) for s in (QUICK_SIZES if args.quick else DEFAULT_SIZES)]
    args.precisions = args.precisions or (DEFAULT_PRECISIONS_CUDA if cuda else DEFAULT_PRECISIONS_CPU)
    bad = [p for p in args.precisions if p not in ("fp32", "bf16", "fp16")]
    if bad:
        raise SystemExit(f"bench.py: unknown precision {bad[0]!r} (fp32, bf16, fp16)")
    args.skipped_precisions = [p for p in args.precisions if p == "fp16" and not cuda]
    args.precisions = [p for p in args.precisions if p not in args.skipped_precisions]
    args.repeats = args.repeats or (2 if args.quick else 20 if cuda else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5 if cuda else 2)
    args.rounds = max(1, args.rounds or (1 if args.quick or cuda else 3))
    args.threads = args.threads or physical_cores()
    args.video_frames = args.video_frames or (20 if args.quick else 60)
    args.webcam_frames = args.webcam_frames or (30 if args.quick else 90)
    args.video_model = "vits"
    args.video_precisions = ["fp32", "bf16"]
    args.curve_model = "vits"
    if args.quick:
        args.no_memory_curve = True
    if args.gpu_table and args.gpu_precision == "fp16" and not cuda:
        raise SystemExit("bench.py: --gpu-table in fp16 needs --device cuda (use --gpu-precision bf16 to try "
                         "it on the CPU)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    sys.path.insert(0, str(SCRIPT.parent))
    args.peers_asked = args.peers
    args = resolve_args(args)
    from random_models import build_weights, has_transformers

    args.peers = has_transformers()
    args.peer_set = peer_set(args)
    command = "python " + shlex.join(sys.argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    report = machine_header(args, command)
    notes = []
    if not args.peers:
        notes.append("transformers is not installed: the peer columns are skipped "
                     "(pip install 'depthcli[test]' to compare)")
    if args.skipped_precisions:
        notes.append("fp16 skipped: depthcli runs fp16 on CUDA only (use bf16 on the CPU)")
    with tempfile.TemporaryDirectory(prefix="depthcli-bench-") as tmp:
        workdir = Path(tmp)
        weights_root = args.weights_dir or workdir / "weights"
        extra = set() if args.no_video and args.no_memory_curve and args.no_webcam else {"vits"}  # they use vits
        needed = [args.gpu_model] if args.gpu_table else sorted(set(args.models) | extra)
        weights: dict[str, Path] = {}
        for name in needed:
            t0 = time.perf_counter()
            weights[name] = build_weights(name, weights_root, args.seed).path
            log(f"weights {name}: {weights[name]} ({time.perf_counter() - t0:.0f} s)")
        raw: dict[str, Any] = {"args": {k: str(v) if isinstance(v, Path) else v
                                        for k, v in vars(args).items()}}
        if args.gpu_table:
            report += gpu_table(args, weights[args.gpu_model], log)
        else:
            rows = benchmark_rows(args, weights, args.peers, workdir, log)
            raw["rows"] = [{"model": r.model, "size": r.size, "precision": r.precision,
                            "max_rel_err": r.max_rel_err, "peer_rel_err": r.peer_rel_err,
                            "results": {f"{i}/{m}": v for (i, m), v in r.results.items()}} for r in rows]
            mem_label = "GPU" if args.device == "cuda" else "RSS"
            report += ["", "## Model-only time per frame and peak memory", "", ROWS_EXPLAINED, ""]
            report += rows_table(rows, [p for p in PEERS if args.peers and p in args.peer_set], mem_label)
            if not args.no_video:
                report += video_section(args, weights["vits"], workdir, log)
            if not args.no_webcam and args.device == "cpu":
                report += webcam_section(args, weights["vits"], workdir, log)
            if not args.no_memory_curve:
                report += memory_curve_section(args, weights["vits"], log)
        load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
        notes.append(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        report += ["", *(f"Note: {n}" for n in notes)]
    text = "\n".join(report) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
