#!/usr/bin/env python
"""How far depthcli's low-precision modes drift from fp32, and what they buy in speed, on each
inference backend.

Runs one model through depthcli in fp32, bf16 (and fp16 on CUDA), on the same input, on each
backend (``--backends``, default torch and, on the CPU, openvino when installed), and prints max
and mean relative error against torch fp32 (the reference) plus the median forward time of each. Why both
errors: the max is the single worst pixel (edges, where bf16's 8-bit mantissa hurts most), the
mean is what the depth map as a whole looks like; a good low-precision mode keeps the mean well
under 1% even when a few pixels are off by more.

The model is a real checkpoint (``--model PATH|NAME``, anything ``depthcli.load_model``
accepts) or random weights of a published size (``--random vits|vitb|vitl``, see
random_models.py). The input is a seeded random image-like tensor of exactly the requested
network size, or with ``--image`` a real picture run through ``DepthPredictor`` (the CLI's own
preprocessing and upsampling), whose errors are then measured at the image's resolution.

On CUDA the fp32 reference is computed with TF32 off: cuDNN would otherwise run fp32
convolutions in TF32 (10-bit mantissa), and "fp32" would not be a reference at all.
"""
from __future__ import annotations

import argparse
import gc
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from random_models import build_weights, relative_errors, sample_input  # noqa: E402

from depthcli import load_model  # noqa: E402
from depthcli.runtime.predictor import DepthPredictor  # noqa: E402

PATCH = 14


@dataclass
class Measurement:
    backend: str
    precision: str
    dtype: str
    ms: float
    output: torch.Tensor  # float32 on the CPU
    max_rel: float = 0.0
    mean_rel: float = 0.0


def parse_size(size: str, width: int | None) -> tuple[int, int | None]:
    """``518`` (with an optional ``--width``) or ``518x924``: returns (height or shorter side,
    width or None)."""
    parts = size.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise SystemExit(f"precision_report.py: --size must be N or HxW, got {size!r}")
    if len(parts) == 2:
        if width is not None:
            raise SystemExit("precision_report.py: give either --size HxW or --size H --width W")
        return int(parts[0]), int(parts[1])
    return int(parts[0]), width


def median_ms(run: Callable[[], float], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        run()
    return statistics.median(run() for _ in range(max(1, repeats)))


def measure_tensor(model: torch.nn.Module, x: torch.Tensor, warmup: int, repeats: int
                   ) -> tuple[float, torch.Tensor]:
    """Median forward ms and the float32 output for a ready network input."""
    dtype = next(model.parameters()).dtype
    x = x.to(next(model.parameters()).device, dtype)
    cuda = x.device.type == "cuda"
    out: list[torch.Tensor] = []

    @torch.inference_mode()
    def run() -> float:
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        y = model(x)
        if cuda:
            torch.cuda.synchronize()
        out[:] = [y]
        return (time.perf_counter() - t0) * 1000

    ms = median_ms(run, warmup, repeats)
    return ms, out[0].float().cpu()


def measure_backend(backend, x: torch.Tensor, warmup: int, repeats: int  # noqa: ANN001
                    ) -> tuple[float, torch.Tensor]:
    """Median ms of ``backend.run`` (staging excluded, as the predictor times it) and its output."""
    out: list[torch.Tensor] = []

    def run() -> float:
        staged = backend.to_input(x.numpy())
        t0 = time.perf_counter()
        out[:] = [torch.from_numpy(backend.run(staged)["depth"])]
        return (time.perf_counter() - t0) * 1000

    ms = median_ms(run, max(warmup, 2), repeats)  # OpenVINO compiles a size's own model at its 2nd sight
    return ms, out[0].float().cpu()


def measure_image(model: torch.nn.Module, image: np.ndarray, size: int, warmup: int, repeats: int,
                  backend=None) -> tuple[float, torch.Tensor, tuple[int, int]]:  # noqa: ANN001
    """Median forward ms (DepthPredictor's own infer_ms) and the depth at the image's size."""
    predictor = DepthPredictor(model, size=size, backend=backend)  # type: ignore[arg-type]
    prepared = predictor.prepare(image)
    out: list[np.ndarray] = []

    def run() -> float:
        prediction = predictor.infer(prepared)
        out[:] = [prediction.depth_hw]
        return prediction.stats.infer_ms

    ms = median_ms(run, warmup, repeats)
    return ms, torch.from_numpy(out[0]), tuple(prepared.input_bchw.shape[-2:])  # type: ignore[return-value]


def _backends(asked: str | None, device: str) -> list[str]:
    """torch first (the reference), then openvino on the CPU when it is installed."""
    import importlib.util

    names = [b.strip() for b in asked.split(",") if b.strip()] if asked else ["torch", "openvino"]
    bad = [b for b in names if b not in ("torch", "openvino")]
    if bad:
        raise SystemExit(f"precision_report.py: unknown backend {bad[0]!r} (torch, openvino)")
    if "openvino" in names and (device != "cpu" or importlib.util.find_spec("openvino") is None):
        if asked:
            raise SystemExit("precision_report.py: the openvino backend needs --device cpu and openvino installed")
        names.remove("openvino")
    return ["torch"] + [b for b in names if b != "torch"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="depthcli bf16/fp16 vs fp32: max and mean relative error, and ms per forward.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="checkpoint file, folder, or registry name (as depthcli --model)")
    src.add_argument("--random", choices=["vits", "vitb", "vitl"], help="random weights of this size")
    p.add_argument("--size", default="518",
                   help="network input HxW, or N: N x --width (random input) / shorter side (--image)")
    p.add_argument("--width", type=int, default=None, help="network input width with a single --size")
    p.add_argument("--image", type=Path, default=None, help="a real image, run through DepthPredictor")
    p.add_argument("--precisions", default=None, help="comma list (default fp32,bf16; +fp16 on CUDA)")
    p.add_argument("--backends", default=None,
                   help="comma list of torch,openvino (default torch, plus openvino on the CPU when installed)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--repeats", type=int, default=3, help="timed forwards per precision (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed forwards first")
    p.add_argument("--version", type=int, choices=[1, 2], default=None, help="override the V1/V2 guess")
    p.add_argument("--seed", type=int, default=1234, help="seed of the random weights (--random)")
    p.add_argument("--weights-dir", type=Path, default=None, help="keep/reuse --random weights here")
    p.add_argument("--out", type=Path, default=None, help="also write the Markdown report here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else (
        "cpu" if args.device == "auto" else args.device)
    if device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("precision_report.py: --device cuda, but torch sees no CUDA device")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = ([p.strip() for p in args.precisions.split(",") if p.strip()] if args.precisions
                  else ["fp32", "bf16"] + (["fp16"] if device == "cuda" else []))
    if "fp32" in precisions:
        precisions.remove("fp32")
    precisions.insert(0, "fp32")  # the reference comes first
    if device == "cpu" and "fp16" in precisions:
        print("note: fp16 skipped: depthcli runs fp16 on CUDA only", file=sys.stderr)
        precisions.remove("fp16")
    height, width = parse_size(args.size, args.width)
    backends = _backends(args.backends, device)

    image = None
    if args.image is not None:
        if width is not None:
            raise SystemExit("precision_report.py: with --image, --size is the shorter side (no width)")
        from depthcli.io.images import read_image

        image = read_image(args.image)
    else:
        width = width or height
        if height % PATCH or width % PATCH:
            raise SystemExit(f"precision_report.py: {height}x{width}: both sides must be multiples "
                             f"of {PATCH}")

    with tempfile.TemporaryDirectory(prefix="depthcli-precision-") as tmp:
        if args.random:
            t0 = time.perf_counter()
            source = build_weights(args.random, args.weights_dir or Path(tmp), args.seed).path
            print(f"random {args.random} weights: {source} ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr)
        else:
            source = args.model
        results: list[Measurement] = []
        network_hw = (height, width)
        x = sample_input(height, width) if image is None else None  # type: ignore[arg-type]
        description = ""
        for backend_name in backends:
            for precision in precisions:
                if backend_name == "openvino" and precision not in ("fp32", "bf16"):
                    continue
                held = "fp32" if backend_name == "openvino" else precision
                model = load_model(source, version=args.version, device=device, dtype=held)
                cfg = model.config
                description = (f"{cfg.encoder.name} V{cfg.version} "
                               f"{'metric ' + str(cfg.max_depth) + ' m' if cfg.metric else 'relative'}")
                backend = None
                if backend_name == "openvino":
                    from depthcli.runtime.backends.openvino_convert import backend_for_model

                    backend = backend_for_model(model, precision=precision, threads=args.threads)
                    for note in backend.notes:
                        print(f"note: {note}", file=sys.stderr)
                if image is not None:
                    ms, out, network_hw = measure_image(model, image, height, args.warmup, args.repeats, backend)
                elif backend is not None:
                    ms, out = measure_backend(backend, x, args.warmup, args.repeats)  # type: ignore[arg-type]
                else:
                    ms, out = measure_tensor(model, x, args.warmup, args.repeats)  # type: ignore[arg-type]
                dtype = str(backend.dtype if backend is not None else next(model.parameters()).dtype)
                results.append(Measurement(backend_name, precision, dtype.removeprefix("torch."), ms, out))
                print(f"{backend_name} {precision}: {ms:.1f} ms", file=sys.stderr)
                del model, backend
                gc.collect()
                if device == "cuda":
                    torch.cuda.empty_cache()

    reference = results[0].output  # torch fp32
    for m in results[1:]:
        m.max_rel, m.mean_rel = relative_errors(m.output, reference)
    if image is not None:
        where = (f"image {args.image} ({image.shape[1]}x{image.shape[0]} WxH) -> network {network_hw[0]}x"
                 f"{network_hw[1]} (HxW) via DepthPredictor; errors at the image's resolution")
    else:
        where = f"random image-like input, network {height}x{width} (HxW); errors on the network output"
    lines = [
        "# depthcli precision report",
        "",
        f"- model: {args.model or f'random {args.random} (seed {args.seed})'}: {description}",
        f"- input: {where}",
        f"- device: {device}" + (f" ({torch.cuda.get_device_name()}, TF32 off)" if device == "cuda" else "")
        + f", threads {torch.get_num_threads()}, torch {torch.__version__}, "
        f"python {platform.python_version()}",
        f"- timing: median of {args.repeats} forwards after {args.warmup} warm-up (forward only)",
        f"- reference range: depth {float(reference.min()):.4g} .. {float(reference.max()):.4g}",
        f"- command: `python {shlex.join(sys.argv)}`",
        "",
        "Errors and speed-ups are against torch fp32, the reference; the bf16 rows of each backend "
        "show what that backend's bf16 costs.",
        "",
        "| backend | precision | computes in | ms | speed-up vs torch fp32 | max rel err (max diff / max ref) "
        "| mean rel err (mean diff / mean ref) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in results:
        ref_ms = results[0].ms
        lines.append(f"| {m.backend} | {m.precision} | {m.dtype} | {m.ms:.1f} | {ref_ms / m.ms:.2f}x | "
                     f"{m.max_rel:.2e} | {m.mean_rel:.2e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
