"""Video Depth Anything through the installed ``depthcli``, end to end, against the ORIGINAL code
(``shared/parity/check_vda.py``'s contract; the original from the parity snapshot through
``vda_reference.py``, skipped without it).

The checkpoints are the original class built at a tiny width from the original's own modules
(``vda_reference.tiny_original``: DINOv2 64 wide with the vits block count and taps, DPT features
32, the published motion modules), seeded and perturbed as check_vda.py does, saved with
``torch.save(state_dict)`` under the published names ``video_depth_anything_vits.pth`` and
``metric_video_depth_anything_vits.pth``. Clips are PNG frame folders (both sides see the same
pixels), made by ``vda_reference.make_clip``.

Covered, on torch and OpenVINO: window mode (``depthcli video DIR --frames npy --no-video``)
== ``infer_video_depth(..., fp32=True)`` frame by frame for several windows with seams (60
frames), a clip shorter than one window, a length that is a multiple of the step (44), one
frame more than the step (23: the last window holds only final frames), an ultra-wide clip and
the metric checkpoint; streaming mode (``--temporal stream``) ==
``infer_video_depth_one`` over more frames than the cache holds. Then ``webcam --temporal
stream``, Ctrl-C midway through window mode, the refusals (a video model for one image,
``--temporal`` with a V2 model, a checkpoint without its motion modules) and the memory bound
of window mode through the Python API.

Every ``depthcli`` run gets its test's own ``$XDG_CACHE_HOME``. Run with ``-s`` to see the errors.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import lines, popen_cli, run_cli, stop_process, temp_leftovers, wait_for_lines, write_video
from vda_reference import make_clip, original_classes, randomize_, tiny_original, write_frames

TOL = 1e-4  # check_vda.py's bar, per frame (max|a-b| / max|b|)
SIZE = 42  # --size: 42 x 56 for the 48 x 64 clips
BACKENDS = ["torch", pytest.param("openvino", marks=pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="openvino is not installed"))]
RELATIVE_CLIPS = {  # name: (frames, height, width, seed)
    "pan60": (60, 48, 64, 5),  # three windows, two seams
    "short12": (12, 48, 64, 6),  # under one window
    "step44": (44, 48, 64, 7),  # a multiple of the step (22)
    "after23": (23, 48, 64, 12),  # one past the step: its last window holds only frames final already
    "wide26": (26, 40, 128, 8),  # ultra-wide (3.2:1): the original's smaller size
}
METRIC_CLIPS = {"metric50": (50, 48, 64, 9), "metricwide26": (26, 40, 128, 10)}
STREAM_CLIP = ("stream50", (50, 48, 64, 11))  # more frames than the cache holds (42: StreamCache)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny networks: see conftest


@dataclass
class VDASetup:
    relative_pth: Path
    metric_pth: Path
    clips: dict[str, Path]  # name -> PNG frame folder
    expected: dict[str, np.ndarray]  # name -> the original's depth, (N, h, w)


@pytest.fixture(scope="module")
def vda(tmp_path_factory: pytest.TempPathFactory) -> VDASetup:
    """The checkpoints, the clips and every reference, computed up front: the original's modules
    (and its torchvision stand-in) are gone again before the tests run."""
    root = tmp_path_factory.mktemp("vda-cli")
    with original_classes(tmp_path_factory.mktemp("upstream")) as classes:
        models, paths = {}, {}
        for metric in (False, True):
            torch.manual_seed(23 + metric)
            model = tiny_original(classes.window, metric=metric)
            randomize_(model, 23 + metric)
            paths[metric] = root / (("metric_" if metric else "") + "video_depth_anything_vits.pth")
            torch.save(model.state_dict(), paths[metric])
            models[metric] = model
        stream = tiny_original(classes.stream)
        stream.load_state_dict(models[False].state_dict(), strict=True)
        clips, expected = {}, {}
        specs = [*((n, s, False) for n, s in RELATIVE_CLIPS.items()), *((n, s, True) for n, s in METRIC_CLIPS.items())]
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):  # tqdm
            for name, (n, h, w, seed), metric in specs:
                clip = make_clip(n, h, w, seed)
                clips[name] = write_frames(root / name, clip)
                expected[name], _ = models[metric].infer_video_depth(clip, 24, input_size=SIZE, device="cpu",
                                                                     fp32=True)
            name, (n, h, w, seed) = STREAM_CLIP
            clip = make_clip(n, h, w, seed)
            clips[name] = write_frames(root / name, clip)
            expected[name] = np.stack([stream.infer_video_depth_one(f, input_size=SIZE, device="cpu", fp32=True)
                                       for f in clip])
    return VDASetup(paths[False], paths[True], clips, expected)


@pytest.fixture(scope="module")
def v2_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Depth Anything V2 checkpoint (depthcli's format, default-initialised weights: it is
    only refused here, never run)."""
    from depthcli.model import DepthAnything, save_safetensors
    from depthcli.model.configs import EncoderConfig, ModelConfig

    net = DepthAnything(ModelConfig(EncoderConfig("tiny", 64, 4, 2, 16, (8, 16, 32, 64), (0, 1, 2, 3)), version=2))
    path = tmp_path_factory.mktemp("v2") / "tiny-v2.safetensors"
    save_safetensors(net, path)
    return path


def own_cache(tmp_path: Path) -> dict[str, str]:
    """This test's own $XDG_CACHE_HOME: no conversion or record shared with another test."""
    return {"XDG_CACHE_HOME": str(tmp_path / "xdg-cache")}


def assert_ok(proc, code: int = 0) -> None:  # noqa: ANN001
    assert proc.returncode == code, f"exit {proc.returncode}, stderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr


def assert_usage_error(stderr: str, fragment: str) -> None:
    """A usage error as click shows every one (exit 2): its usage and help hint, then ONE line
    saying what is wrong."""
    err = [line for line in lines(stderr) if not line.startswith(("Usage: depthcli ", "Try 'depthcli "))]
    assert len(err) == 1 and err[0].startswith("Error: ") and fragment in err[0], stderr
    print(f"\n{err[0]}")


def frame_files(folder: Path) -> list[Path]:
    """The ``--frames npy`` files of a clip (``<stem>_000123.npy``), by frame number."""
    return sorted(folder.glob("*.npy"), key=lambda p: int(re.search(r"(\d+)\.npy$", p.name)[1]))


def video_frames(tmp_path: Path, model: Path, clips: list[Path], backend: str, *extra: object,
                 out: str = "out") -> dict[str, list[np.ndarray]]:
    """``depthcli video CLIP... --model M --size 42 --frames npy --no-video -o OUT --backend B``:
    one process for every clip; each clip's depth frames, in order."""
    proc = run_cli("video", *clips, "--model", model, "--size", SIZE, "--frames", "npy", "--no-video",
                   "-o", tmp_path / out, "--backend", backend, *extra, env=own_cache(tmp_path), timeout=600)
    assert_ok(proc)
    assert f"{backend} cpu fp32" in proc.stderr, proc.stderr  # what ran it, no fallback
    assert temp_leftovers(tmp_path / out) == []
    frames = {}
    for clip in clips:
        files = frame_files(tmp_path / out / f"{clip.name}_depth_frames")
        assert [int(re.search(r"(\d+)\.npy$", f.name)[1]) for f in files] == list(range(len(files)))
        frames[clip.name] = [np.load(f) for f in files]
    return frames


def max_rel_per_frame(ours: list[np.ndarray], ref: np.ndarray) -> float:
    assert len(ours) == len(ref), f"{len(ours)} frames, the original {len(ref)}"
    worst = 0.0
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape and a.dtype == np.float32, (a.shape, b.shape, a.dtype)
        worst = max(worst, float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max()))
    return worst


# ----------------------------------------------------------------------------------- 6, 7. exact depth
@pytest.mark.parametrize("backend", BACKENDS)
def test_relative_window_and_stream_modes_equal_the_original(vda: VDASetup, tmp_path: Path, backend: str) -> None:
    """Window mode on every relative clip (one run), then --temporal stream (a second run: on
    OpenVINO from the conversion the first one cached)."""
    names = list(RELATIVE_CLIPS)
    got = video_frames(tmp_path, vda.relative_pth, [vda.clips[n] for n in names], backend)
    for name in names:
        err = max_rel_per_frame(got[name], vda.expected[name])
        print(f"\nvda cli {backend} window {name} {RELATIVE_CLIPS[name]}: max rel err per frame {err:.1e}")
        assert err <= TOL, f"{name}: {err:.2e}"
    name = STREAM_CLIP[0]
    got = video_frames(tmp_path, vda.relative_pth, [vda.clips[name]], backend, "--temporal", "stream", out="stream")
    err = max_rel_per_frame(got[name], vda.expected[name])
    print(f"\nvda cli {backend} stream {name}: max rel err per frame {err:.1e}")
    assert err <= TOL
    meta = json.loads((tmp_path / "stream" / f"{name}_depth.json").read_text())
    assert meta["temporal"] == "stream" and meta["kind"] == "relative inverse depth"


@pytest.mark.parametrize("backend", BACKENDS)
def test_metric_checkpoint_equals_the_original(vda: VDASetup, tmp_path: Path, backend: str) -> None:
    names = list(METRIC_CLIPS)
    got = video_frames(tmp_path, vda.metric_pth, [vda.clips[n] for n in names], backend)
    for name in names:
        err = max_rel_per_frame(got[name], vda.expected[name])
        print(f"\nvda cli {backend} metric window {name} {METRIC_CLIPS[name]}: max rel err per frame {err:.1e}")
        assert err <= TOL, f"{name}: {err:.2e}"
    meta = json.loads((tmp_path / "out" / f"{names[0]}_depth.json").read_text())
    assert meta["kind"] == "metric depth, metres" and meta["temporal"] == "window"


def test_webcam_stream_mode_from_a_file(vda: VDASetup, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", n=12, size=(64, 48))
    proc = run_cli("webcam", "--source", clip, "--no-window", "--temporal", "stream", "--max-frames", 7,
                   "--stats", "-", "--model", vda.relative_pth, "--size", SIZE, "--backend", "torch",
                   env=own_cache(tmp_path))
    assert_ok(proc)
    stats = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [s["name"] for s in stats] == [f"frame {i}" for i in range(7)]
    assert all(s["input_hw"] == [48, 64] and s["processed_hw"] == [42, 56] for s in stats)


# ----------------------------------------------------------------------------------- 8. interrupted
def test_interrupted_window_mode_keeps_complete_frames_in_order(vda: VDASetup, tmp_path: Path) -> None:
    """Ctrl-C while window mode runs: exit 130; the frames written are 0..n-1, each complete and
    equal to the uninterrupted run's (a frame is written once final, never revised)."""
    clip = write_frames(tmp_path / "long", make_clip(150, 48, 64, seed=12))
    args = ("video", clip, "--model", vda.relative_pth, "--size", SIZE, "--frames", "npy", "--no-video",
            "--backend", "torch")
    full = run_cli(*args, "-o", tmp_path / "full", "-q", env=own_cache(tmp_path), timeout=600)
    assert_ok(full)
    stats, err_path = tmp_path / "stats.jsonl", tmp_path / "stderr.txt"
    proc = popen_cli(*args, "-o", tmp_path / "cut", "--stats", stats, env=own_cache(tmp_path), stderr_path=err_path)
    try:
        wait_for_lines(proc, stats, 23)  # the first window's final frames are out: midway
        assert proc.poll() is None, f"finished before the signal:\n{err_path.read_text()}"
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    finally:
        stop_process(proc)
    err = err_path.read_text()
    assert code == 130, f"exit {code}:\n{err}"
    assert "Traceback" not in err, err
    done = re.search(r"interrupted after (\d+) frames; frames finalised and kept", err)
    assert done, err
    n = int(done[1])
    files = frame_files(tmp_path / "cut" / "long_depth_frames")
    full_files = frame_files(tmp_path / "full" / "long_depth_frames")
    print(f"\nvda cli interrupted after {n} of 150 frames")
    assert 22 < n < 150 and len(full_files) == 150
    assert [f.name for f in files] == [f.name for f in full_files[:n]]  # 0..n-1, nothing skipped
    assert len(stats.read_text().splitlines()) == n
    for cut, whole in zip(files, full_files, strict=False):
        assert np.array_equal(np.load(cut), np.load(whole)), cut.name
    assert temp_leftovers(tmp_path) == []


# ----------------------------------------------------------------------------------- 9. refusals
def test_a_video_model_refuses_one_image(vda: VDASetup, tmp_path: Path) -> None:
    from cli_helpers import write_image

    photo = tmp_path / "photo.png"
    write_image(photo)
    proc = run_cli("image", photo, "--model", vda.relative_pth, "--size", SIZE, "-o", tmp_path / "out",
                   env=own_cache(tmp_path))
    assert_ok(proc, code=2)
    assert_usage_error(proc.stderr, "`depthcli video`")
    assert not (tmp_path / "out").exists()


def test_temporal_with_a_v2_model_is_a_usage_error(v2_ckpt: Path, vda: VDASetup, tmp_path: Path) -> None:
    clip = vda.clips["short12"]
    for command in (("video", clip, "--frames", "npy", "--no-video", "-o", tmp_path / "out"),
                    ("webcam", "--source", write_video(tmp_path / "c.mp4", n=3), "--no-window")):
        proc = run_cli(*command, "--temporal", "stream", "--model", v2_ckpt, "--size", 70,
                       env=own_cache(tmp_path))
        assert_ok(proc, code=2)
        assert_usage_error(proc.stderr, "--temporal stream applies to video models")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.npy"))


def test_checkpoint_without_motion_modules(vda: VDASetup, tmp_path: Path) -> None:
    state = torch.load(vda.relative_pth, weights_only=True)
    broken = tmp_path / "video_depth_anything_vits.pth"
    torch.save({k: v for k, v in state.items() if "motion_modules" not in k}, broken)
    proc = run_cli("video", vda.clips["short12"], "--model", broken, "--size", SIZE, "--frames", "npy",
                   "--no-video", "-o", tmp_path / "out", env=own_cache(tmp_path))
    assert_ok(proc, code=3)
    err = lines(proc.stderr)
    assert len(err) == 1 and "none of its temporal (motion module) weights" in err[0], err
    print(f"\nvda cli no motion modules: {err[0]}")


# ----------------------------------------------------------------------------------- 10. memory
def test_window_mode_holds_a_bounded_number_of_frames(vda: VDASetup) -> None:
    """Through the Python API: 200 frames fed one at a time, at most about one window held."""
    import depthcli
    from depthcli.runtime.temporal import TemporalPredictor

    model = depthcli.load_model(vda.relative_pth, device="cpu")
    predictor = TemporalPredictor(model, size=28)
    runner = predictor.clip_runner("window")
    clip = make_clip(200, 28, 36, seed=13)[..., ::-1]  # BGR, as OpenCV reads frames
    held, depth_held, out = 0, 0, []
    for i, frame in enumerate(clip):
        out += runner.push(i, frame, predictor.prepare(np.ascontiguousarray(frame), f"frame {i}"))
        held, depth_held = max(held, runner.held_frames), max(depth_held, runner.aligner.held_frames)
    out += runner.finish()  # 200 = 9 x 22 + 2: the last window holds only frames final already
    print(f"\nvda window mode, 200 frames: at most {held} frames and {depth_held} depth frames held")
    assert [index for index, _, _ in out] == list(range(200))
    assert held <= 45 and depth_held <= 10
    assert runner.held_frames == 0
