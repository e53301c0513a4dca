"""The CUDA path, on a real NVIDIA GPU: skipped without one (CI has none; `scripts/gpu_check.sh`
runs these on a lent GPU machine).

What only a GPU can prove: fp32 on CUDA equals the CPU path, fp16/bf16 stay close, the VRAM
figure of the per-frame line is `torch.cuda.max_memory_allocated`, an out-of-memory input is one
line and the next input still runs, batched inference equals one-at-a-time, and the video and
webcam-from-file paths run on the GPU.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import lines, run_cli, write_image, write_video

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")

SIZE = ("--size", "140")


def _depth(ckpt: str, image_path: Path, out: Path, *args: str) -> np.ndarray:
    proc = run_cli("image", image_path, "--model", ckpt, "-f", "npy", "-o", out, *SIZE, *args)
    assert proc.returncode == 0, proc.stderr
    return np.load(out / f"{image_path.stem}_depth.npy")


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_fp32_cuda_equals_cpu_and_low_precision_error_is_reported(tmp_path: Path, tiny_ckpt: str) -> None:
    img = tmp_path / "a.png"
    write_image(img, 120, 200, seed=3)
    cpu = _depth(tiny_ckpt, img, tmp_path / "cpu", "--device", "cpu", "--backend", "torch")
    gpu = _depth(tiny_ckpt, img, tmp_path / "gpu", "--device", "cuda")
    assert _rel(gpu, cpu) < 1e-4  # TF32 stays off for fp32 matmuls (torch's default)
    for flag in ("--fp16", "--bf16"):
        low = _depth(tiny_ckpt, img, tmp_path / flag.strip("-"), "--device", "cuda", flag)
        err = _rel(low, cpu)
        print(f"cuda {flag[2:]} vs cpu fp32: max rel err {err:.2e}")
        assert err < 5e-2


def test_vram_figure_is_max_memory_allocated(tmp_path: Path, tiny_ckpt: str) -> None:
    from depthcli.runtime.loading import build_predictor
    from depthcli.runtime.spec import PredictorSpec

    predictor = build_predictor(PredictorSpec(model=tiny_ckpt, device="cuda", size=140))
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    stats = predictor(image).stats
    assert stats.mem_kind == "vram"
    assert stats.peak_mem_mb == pytest.approx(torch.cuda.max_memory_allocated() / 2**20, rel=1e-6)
    assert "VRAM" in stats.line()


def test_out_of_memory_is_one_line_exit_4_and_the_next_image_runs(tmp_path: Path, tiny_ckpt: str) -> None:
    """A 40x4000 strip at --size 518 becomes a 518x51800 network input; with this process's GPU
    memory capped at 1 GiB it cannot run, while the small image after it can."""
    strip, small = tmp_path / "strip.png", tmp_path / "small.png"
    write_image(strip, 40, 4000, seed=1)
    write_image(small, 64, 64, seed=2)
    argv = ["depthcli", "image", str(strip), str(small), "--model", tiny_ckpt, "--device", "cuda",
            "-f", "npy", "-o", str(tmp_path / "out")]
    code = ("import sys, torch; torch.cuda.set_per_process_memory_fraction("
            "2**30 / torch.cuda.get_device_properties(0).total_memory); "
            f"from depthcli.cli.main import main; sys.argv = {argv!r}; main()")
    import subprocess

    from cli_helpers import cli_env

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=cli_env({"DEPTHCLI_MEMORY_CHECK": "0"}))
    errors = [line for line in lines(proc.stderr) if line.startswith("depthcli: ")]
    assert proc.returncode == 4, proc.stderr
    assert len(errors) == 1 and "out of memory" in errors[0] and "Traceback" not in proc.stderr
    assert (tmp_path / "out" / "small_depth.npy").exists()
    assert not (tmp_path / "out" / "strip_depth.npy").exists()


def test_batched_images_equal_one_at_a_time(tmp_path: Path, tiny_ckpt: str) -> None:
    src = tmp_path / "in"
    for i in range(5):
        write_image(src / f"{i}.png", 96, 128, seed=i)
    one = run_cli("image", src, "--model", tiny_ckpt, "-f", "npy", "-o", tmp_path / "b1", *SIZE,
                  "--device", "cuda", "--batch", "1")
    many = run_cli("image", src, "--model", tiny_ckpt, "-f", "npy", "-o", tmp_path / "b4", *SIZE,
                   "--device", "cuda", "--batch", "4", "--stats", tmp_path / "stats.jsonl")
    assert one.returncode == 0 and many.returncode == 0, one.stderr + many.stderr
    for i in range(5):
        a, b = np.load(tmp_path / "b1" / f"{i}_depth.npy"), np.load(tmp_path / "b4" / f"{i}_depth.npy")
        assert _rel(b, a) < 1e-5
    stats = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert len(stats) == 5 and all(s["mem_kind"] == "vram" for s in stats)


def test_video_and_webcam_from_file_on_cuda(tmp_path: Path, tiny_ckpt: str) -> None:
    clip = tmp_path / "clip.mp4"
    write_video(clip, n=12)
    video = run_cli("video", clip, "--model", tiny_ckpt, "--device", "cuda", "--fp16", "-o", tmp_path, *SIZE)
    assert video.returncode == 0, video.stderr
    assert (tmp_path / "clip_depth.mp4").exists()
    assert "frames/s end to end" in video.stderr  # the one end-to-end rate: the summary's
    cam = run_cli("webcam", "--source", clip, "--no-window", "--model", tiny_ckpt, "--device", "cuda",
                  "--max-frames", "6", *SIZE)
    assert cam.returncode == 0, cam.stderr
    assert "VRAM" in cam.stderr
