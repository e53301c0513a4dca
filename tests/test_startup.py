"""Start-up (issue #24): a cached OpenVINO model runs without torch and without reading the
checkpoint; the NumPy pieces that make that possible equal the torch ones; the checkpoint memo
rejects changed weights. No test here asserts a time (scripts/bench.py --startup measures).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cli_helpers import SIZE_ARG, cli_env, lines, write_image

from depthcli.model.dinov2.position_encoding import PositionEncoding
from depthcli.runtime.position import resize_position_table
from depthcli.runtime.postprocess import upsample_bilinear

# the torch-free path's pieces against torch: <= 1e-6 (float rounding is ~2e-7)
TOL = 1e-6
SAME_DEPTH = 1e-5  # a later run of one shape may run the shape's own compiled model: float precision apart


def same_depth(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and float(np.abs(a - b).max()) <= SAME_DEPTH * float(np.abs(b).max())


@pytest.mark.parametrize("grid", [(37, 56), (56, 37), (18, 24), (5, 90), (74, 74), (1, 1), (36, 37), (37, 37)])
def test_numpy_position_resize_equals_torch(grid: tuple[int, int]) -> None:
    pe = PositionEncoding(64)
    with torch.no_grad():
        pe.table.copy_(torch.randn(pe.table.shape, generator=torch.Generator().manual_seed(3)))
    with torch.inference_mode():
        expected = pe(*grid, torch.float32).numpy()
    got = resize_position_table(pe.table.detach().numpy(), *grid)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() / np.abs(expected).max() <= TOL


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("sizes", [((37, 56), (300, 451)), ((518, 784), (300, 451)), ((70, 98), (1500, 2100)),
                                   ((28, 42), (28, 43)), ((14, 14), (1, 1)), ((56, 70), (56, 70))])
def test_numpy_upsample_equals_torch(sizes: tuple, align_corners: bool) -> None:
    (h, w), out_hw = sizes
    depth = (np.random.default_rng(h * w).random((h, w), dtype=np.float32) * 7).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(depth)[None, None], size=out_hw, mode="bilinear",
                             align_corners=align_corners)[0, 0].numpy()
    got = upsample_bilinear(depth, out_hw, align_corners)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() / np.abs(expected).max() <= TOL


def _run_reporting_torch(*args: object, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, bool]:
    """``depthcli ARGS`` in a Python that says at exit whether torch was ever imported."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.stderr.write('TORCH-LOADED\\n' if 'torch' in sys.modules else ''))\n"
            "sys.argv[0] = 'depthcli'\nfrom depthcli.cli.main import main\nmain()")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, timeout=300,
                          env=cli_env(env), stdin=subprocess.DEVNULL, text=True)
    return proc, "TORCH-LOADED" in proc.stderr


def test_a_cached_model_runs_without_torch_and_without_the_checkpoint(tiny_ckpt: str, tmp_path: Path) -> None:
    """First run: converts (torch). Second run: same output, torch never imported, the
    checkpoint not opened (made unreadable to prove it)."""
    image = tmp_path / "a.png"
    write_image(image, 45, 80)
    ckpt = tmp_path / "tiny.safetensors"
    ckpt.write_bytes(Path(tiny_ckpt).read_bytes())
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "DEPTHCLI_BACKEND": ""}
    args = ("image", image, "--model", ckpt, *SIZE_ARG, "-f", "npy")
    first, torch_first = _run_reporting_torch(*args, "-o", tmp_path / "one", env=env)
    assert first.returncode == 0, first.stderr
    assert torch_first and "converted" in first.stderr
    if os.geteuid() != 0:  # root reads anything: then only the missing torch import proves it
        ckpt.chmod(0)
    second, torch_second = _run_reporting_torch(*args, "-o", tmp_path / "two", env=env)
    assert second.returncode == 0, second.stderr
    assert not torch_second, second.stderr
    assert "converted" not in second.stderr and "Traceback" not in second.stderr
    assert same_depth(np.load(tmp_path / "one" / "a_depth.npy"), np.load(tmp_path / "two" / "a_depth.npy"))


def test_a_changed_checkpoint_of_the_same_name_and_size_is_converted_again(tiny_ckpt: str, tmp_path: Path) -> None:
    """The memo trusts (size, mtime) only while both hold: changed bytes of the same size give
    a new mtime, a re-hash, another sha256, a new conversion and the new weights' depth."""
    from safetensors.numpy import load_file, save_file

    image = tmp_path / "a.png"
    write_image(image, 45, 80)
    ckpt = tmp_path / "tiny.safetensors"
    ckpt.write_bytes(Path(tiny_ckpt).read_bytes())
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "DEPTHCLI_BACKEND": "openvino"}
    args = ("image", image, "--model", ckpt, *SIZE_ARG, "-f", "npy", "--stats", "-")
    first, _ = _run_reporting_torch(*args, "-o", tmp_path / "one", env=env)
    assert first.returncode == 0, first.stderr
    from safetensors import safe_open

    with safe_open(str(ckpt), "np") as f:
        meta = f.metadata()
    tensors = load_file(str(ckpt))
    name = next(k for k in sorted(tensors) if k.startswith("head.") and k.endswith("weight"))
    tensors[name] = (tensors[name] * 1.5).astype(tensors[name].dtype)
    size = ckpt.stat().st_size
    save_file(tensors, str(ckpt), metadata=meta)
    assert ckpt.stat().st_size == size
    second, torch_second = _run_reporting_torch(*args, "-o", tmp_path / "two", env=env)
    assert second.returncode == 0, second.stderr
    assert torch_second and "converted" in second.stderr, second.stderr
    one, two = np.load(tmp_path / "one" / "a_depth.npy"), np.load(tmp_path / "two" / "a_depth.npy")
    assert not same_depth(one, two)
    third, torch_third = _run_reporting_torch(*args, "-o", tmp_path / "three", env=env)
    assert third.returncode == 0 and not torch_third, third.stderr
    assert same_depth(two, np.load(tmp_path / "three" / "a_depth.npy"))


def test_a_touched_checkpoint_is_rehashed_and_still_cached(tiny_ckpt: str, tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    write_image(image)
    ckpt = tmp_path / "tiny.safetensors"
    ckpt.write_bytes(Path(tiny_ckpt).read_bytes())
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "DEPTHCLI_BACKEND": "openvino"}
    args = ("image", image, "--model", ckpt, *SIZE_ARG, "-f", "npy", "-o", tmp_path / "out")
    assert _run_reporting_torch(*args, env=env)[0].returncode == 0
    os.utime(ckpt, ns=(ckpt.stat().st_atime_ns, ckpt.stat().st_mtime_ns + 10**9))
    proc, loaded = _run_reporting_torch(*args, env=env)
    assert proc.returncode == 0 and not loaded, proc.stderr
    (record,) = (tmp_path / "cache" / "depthcli" / "checkpoints").glob("*.json")
    assert json.loads(record.read_text())["files"][0][2] == ckpt.stat().st_mtime_ns  # refreshed


def test_help_version_and_models_stay_light() -> None:
    """No torch, cv2 or openvino for --help, --version and `depthcli models`."""
    code = ("import sys\nfrom depthcli.cli.main import main\n"
            "for argv in (['--help'], ['--version'], ['image', '--help'], ['models']):\n"
            "    sys.argv[1:] = argv\n"
            "    try:\n        main()\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('torch', 'cv2', 'openvino') if m in sys.modules]\n"
            "sys.stderr.write('HEAVY ' + ' '.join(heavy) + '\\n')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, env=cli_env(), text=True)
    assert proc.returncode == 0, proc.stderr
    assert lines(proc.stderr)[-1].strip() == "HEAVY", proc.stderr
