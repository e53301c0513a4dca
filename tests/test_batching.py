"""``--batch N``: inputs of one network size through the model together (the GPU's default is
4; checked here on the CPU, where it runs the same code). The outputs must be those of one at
a time; a batch that runs out of memory is retried one by one."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import SIZE_ARG, run_cli, write_image, write_video


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_image_batches_equal_one_at_a_time(tmp_path: Path, tiny_ckpt: str) -> None:
    src = tmp_path / "in"
    # two network sizes interleaved with a bad file: batches form only from neighbours of one size
    shapes = [(48, 64), (48, 64), (64, 48), (48, 64), (48, 64), (48, 64)]
    for i, (h, w) in enumerate(shapes):
        write_image(src / f"{i}.png", h, w, seed=i)
    (src / "3b.png").write_bytes(b"not an image")
    outs = {}
    for batch in ("1", "4"):
        proc = run_cli("image", src, "--model", tiny_ckpt, *SIZE_ARG, "-f", "npy", "-o", tmp_path / batch,
                       "--batch", batch)
        assert proc.returncode == 1, proc.stderr  # the bad file
        assert proc.stderr.count("3b.png") == 1
        outs[batch] = {p.name: np.load(p) for p in (tmp_path / batch).glob("*.npy")}
    assert sorted(outs["1"]) == sorted(outs["4"]) == [f"{i}_depth.npy" for i in range(6)]
    for name, depth in outs["1"].items():
        assert _rel(outs["4"][name], depth) < 1e-5, name


def test_video_batches_equal_one_at_a_time(tmp_path: Path, tiny_ckpt: str) -> None:
    clip = write_video(tmp_path / "clip.mp4", n=10)
    frames = {}
    for batch in ("1", "4"):
        out = tmp_path / batch
        proc = run_cli("video", clip, "--model", tiny_ckpt, *SIZE_ARG, "--frames", "npy", "--no-video",
                       "-o", out, "--batch", batch)
        assert proc.returncode == 0, proc.stderr
        frames[batch] = sorted((out / "clip_depth_frames").glob("*.npy"))
    assert [p.name for p in frames["1"]] == [p.name for p in frames["4"]] and len(frames["1"]) == 10
    for a, b in zip(frames["1"], frames["4"], strict=True):
        assert _rel(np.load(b), np.load(a)) < 1e-5


def test_out_of_memory_batch_is_retried_one_by_one() -> None:
    from depthcli.jobs.image import ImageJobError, infer_batch
    from depthcli.runtime.predictor import Prepared

    class Predictor:
        """Fails any forward of more than one input, and any input wider than 28 pixels."""

        def infer_batch(self, batch: list) -> list:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

        def infer(self, prepared: Prepared) -> str:
            if prepared.input_bchw.shape[-1] > 28:
                raise RuntimeError("CUDA out of memory. Tried to allocate 9.00 GiB")
            return prepared.name

    small = Prepared("small", torch.zeros(1, 3, 14, 28), (10, 20), 0.0)
    big = Prepared("big", torch.zeros(1, 3, 14, 42), (10, 30), 0.0)
    results = infer_batch(Predictor(), [small, big, small])
    assert results[0] == results[2] == "small"
    assert isinstance(results[1], ImageJobError) and results[1].out_of_memory
    assert "out of memory at 42x14" in str(results[1])


def test_batch_needs_one_network_size(tiny_ckpt: str) -> None:
    from depthcli.runtime.loading import build_predictor
    from depthcli.runtime.spec import PredictorSpec

    predictor = build_predictor(PredictorSpec(model=tiny_ckpt, device="cpu", backend="torch", size=70, batch=2))
    assert predictor.batch == 2
    rng = np.random.default_rng(0)
    a = predictor.prepare(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "a")
    b = predictor.prepare(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8), "b")
    with pytest.raises(ValueError, match="one network size"):
        predictor.infer_batch([a, b])
    c = predictor.prepare(rng.integers(0, 255, (50, 66, 3), dtype=np.uint8), "c")  # same 70x98 input as a
    together = predictor.infer_batch([a, c])
    assert [p.depth_hw.shape for p in together] == [(48, 64), (50, 66)]
    assert _rel(together[1].depth_hw, predictor.infer(c).depth_hw) < 1e-5
