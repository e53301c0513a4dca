"""Depth Anything 3 in depthcli against the ORIGINAL code (ByteDance-Seed/Depth-Anything-3 @ 2c21ea8,
imported from the parity snapshot by ``da3_reference.py``; skipped without it), on seeded random
weights perturbed as the parity harness does.

- small networks of the original's own modules (``alternating``: DA3-SMALL/BASE's architecture;
  ``sky``: DA3MONO/METRIC's), float32 and float64;
- the four presets at their real sizes, written as their Hub folders (config.json +
  model.safetensors saved the Hub-mixin way) and read with ``depthcli.load_model``;
- the sky fill and metric scaling, the checkpoint errors, tracing at one size and running at
  another.

Run with ``-s`` to see the measured errors.
"""
from __future__ import annotations

import copy
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from da3_reference import RealPresets, net_forward, original_da3, tiny_pair
from da3_reference import random_image as image

from depthcli import load_model
from depthcli.model import CheckpointError, build_model, read_checkpoint, save_safetensors
from depthcli.model.depth_anything_3 import PRESETS, DA3Config
from depthcli.model.depth_anything_3 import checkpoint as da3_checkpoint
from depthcli.model.depth_anything_3.model import DepthAnything3
from depthcli.model.depth_anything_3.postprocess import fill_sky, metric_scale
from depthcli.model.dinov2.attention import Attention

TOL = 1e-5
TOL_FLOAT64 = 1e-12
SHAPES = {"square": (56, 56), "wide": (56, 98), "portrait": (84, 42)}
KINDS = ["alternating", "sky"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny networks: see conftest


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copyfile(src, dst)


def max_rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.double() - expected.double()).abs().max() / expected.double().abs().max())


def as_outputs(result: torch.Tensor | tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    result = result if isinstance(result, tuple) else (result,)
    return dict(zip(("depth", "sky")[: len(result)], result, strict=True))


def assert_parity(label: str, ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], tol: float = TOL) -> None:
    assert ours.keys() == ref.keys(), f"{label}: outputs {sorted(ours)}, the original's {sorted(ref)}"
    for name, expected in ref.items():
        actual = ours[name]
        assert actual.shape == expected.shape, f"{label} {name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
        assert expected.std() > 1e-3 * expected.abs().max(), f"{label} {name}: degenerate reference"
        err = max_rel_error(actual, expected)
        print(f"\nda3 parity {label} {name}: max|a-b|/max|b| = {err:.2e}")
        assert err <= tol, f"{label} {name}: relative error {err:.2e} > {tol:.0e}"


# ----------------------------------------------------------------------------------- small networks
@pytest.fixture(scope="module")
def tiny() -> dict[str, tuple[torch.nn.Module, DepthAnything3]]:
    """kind -> (the original's net, depthcli's with the same weights)."""
    return {kind: tiny_pair(kind, 100 + i, image((42, 56), seed=7, batch=1)) for i, kind in enumerate(KINDS)}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_tiny_parity(tiny: dict, kind: str, shape: str) -> None:
    net, ours = tiny[kind]
    x = image(SHAPES[shape], seed=len(shape))
    with torch.no_grad():
        assert_parity(f"tiny {kind} {shape}", as_outputs(ours(x)), net_forward(net, x))


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_parity_float64(tiny: dict, kind: str) -> None:
    """In float64 the same arithmetic leaves nothing but float64 rounding: any slip in the math
    (an eps, a position, an order of operations that matters) would show far above it."""
    net, ours = (copy.deepcopy(m).double() for m in tiny[kind])
    net.cam_dec = None  # the camera decoder (not depth) computes in float32 whatever its input
    x = image(SHAPES["wide"], seed=3, dtype=torch.float64)
    with torch.no_grad():
        assert_parity(f"tiny {kind} float64", as_outputs(ours(x)), net_forward(net, x), tol=TOL_FLOAT64)


@pytest.mark.parametrize("backend", ["sdpa", "chunked"])
def test_tiny_bf16_close(tiny: dict, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    """bf16 (both attention kernels): the RoPE tables and UV embedding follow the model's dtype."""
    monkeypatch.setattr(Attention, "backend", backend)
    _, ours = tiny["alternating"]
    x = image(SHAPES["wide"], seed=5)
    with torch.no_grad():
        ref = ours(x)
        low = copy.deepcopy(ours).to(torch.bfloat16)(x.bfloat16())
    assert low.dtype == torch.bfloat16
    err = max_rel_error(low.float(), ref)
    print(f"\nda3 tiny bf16 ({backend}): max|a-b|/max|b| = {err:.2e}")
    assert err < 0.05


def test_tiny_depthcli_format_round_trip(tiny: dict, tmp_path: Path) -> None:
    """save_safetensors writes the family and the whole config; read back, the same network."""
    for kind in KINDS:
        _, ours = tiny[kind]
        path = tmp_path / f"{kind}.safetensors"
        save_safetensors(ours, path)
        ckpt = read_checkpoint(path)
        assert ckpt.layout == "depthcli" and ckpt.config == ours.config
        again = build_model(ckpt)
        x = image(SHAPES["portrait"], seed=11)
        with torch.no_grad():
            for a, b in zip(as_outputs(again(x)).values(), as_outputs(ours(x)).values(), strict=True):
                assert torch.equal(a, b)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore:.*torch.jit.trace:DeprecationWarning")
@pytest.mark.parametrize("kind", KINDS)
def test_traced_at_one_size_runs_at_another(tiny: dict, kind: str) -> None:
    """The OpenVINO export's wrapper (position encoding fed in), traced at 28x42, run at other
    sizes: equal to eager. RoPE positions and the UV embedding follow the input's shape."""
    from depthcli.runtime.backends.openvino_graph import PositionFedModel, position_encoding

    _, ours = tiny[kind]

    def inputs(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        return image((h, w), seed=h + w), position_encoding(ours, h // 14, w // 14).clone()

    with torch.no_grad():
        traced = torch.jit.trace(PositionFedModel(ours).eval(), inputs(28, 42), check_trace=False)
        for h, w in [(56, 98), (84, 42)]:
            x, pos = inputs(h, w)
            got, want = as_outputs(traced(x, pos)), as_outputs(ours(x))
            for name in want:
                assert got[name].shape == want[name].shape
                assert max_rel_error(got[name], want[name]) <= 1e-6, f"{kind} {name} at {h}x{w}"


# ----------------------------------------------------------------------------------- real presets
@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - Iterator[RealPresets]
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 4 * 2**30:
        root = Path(tempfile.mkdtemp(prefix="depthcli-da3-", dir=shm))
        yield RealPresets(root)
        shutil.rmtree(root, ignore_errors=True)
    else:
        yield RealPresets(tmp_path_factory.mktemp("da3-presets"))


REAL_SHAPE = (56, 84)  # 4 x 6 patches: the real networks, cheaply; every aspect is covered above


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_parity_through_hub_folder(real: RealPresets, preset: str) -> None:
    """Read as load_model reads it. (load_model then also converts the network to channels-last,
    which changes the convolution kernels' rounding: on these perturbed ViT-L weights that moves
    the sky output by up to ~3e-5 of its peak, the same as the original's own float32 error
    against float64; the network itself equals the original's to the bit on this CPU.)"""
    net, folder = real.get(preset)
    ckpt = read_checkpoint(folder)
    assert ckpt.layout == "da3" and ckpt.config == PRESETS[preset]
    model = build_model(ckpt)
    x = image(REAL_SHAPE, seed=21, batch=1)
    with torch.no_grad():
        assert_parity(preset, as_outputs(model(x)), net_forward(net, x))


def test_hub_file_shared_tensors_restored(real: RealPresets) -> None:
    """save_model keeps one name of the LayerNorm DualDPT's auxiliary levels share and lists the
    others in the metadata; read back, every name of the original's state dict is there."""
    from depthcli.model.checkpoints import _load_safetensors

    net, folder = real.get("da3-small")
    expected = {f"model.{k}": v for k, v in net.state_dict().items()}
    state, meta = _load_safetensors(folder / "model.safetensors")
    dropped = {k for k in meta if k in expected}
    assert dropped and all(".output_conv2_aux." in k for k in dropped)
    assert set(state) == set(expected)
    assert all(torch.equal(state[k], expected[k]) for k in dropped)
    without = {k: v for k, v in state.items() if k not in dropped}  # a file that lost the metadata
    assert set(da3_checkpoint.restore_shared(without)) == set(expected)


def test_single_safetensors_file_preset_from_tensors(real: RealPresets, tmp_path: Path) -> None:
    _, folder = real.get("da3-small")
    lone = tmp_path / "weights.safetensors"
    link_or_copy(folder / "model.safetensors", lone)
    ckpt = read_checkpoint(lone)
    assert ckpt.layout == "da3" and ckpt.config == PRESETS["da3-small"]


def test_load_model_and_depthcli_format_round_trip(real: RealPresets, tmp_path: Path) -> None:
    _, folder = real.get("da3-small")
    model = load_model(folder, device="cpu")
    assert isinstance(model, DepthAnything3) and model.config == PRESETS["da3-small"]
    save_safetensors(model, tmp_path / "small.safetensors")
    again = load_model(tmp_path / "small.safetensors", device="cpu")
    assert again.config == model.config
    x = image(SHAPES["wide"], seed=9, batch=1)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


# ----------------------------------------------------------------------------------- checkpoint errors
def copy_folder(src: Path, dst: Path, *, config: dict | None = None,
                edit=None) -> Path:  # noqa: ANN001 - edit(state) -> state
    from safetensors.torch import load_file, save_file

    dst.mkdir()
    if edit is None:
        link_or_copy(src / "model.safetensors", dst / "model.safetensors")
    else:
        save_file(edit(load_file(src / "model.safetensors")), dst / "model.safetensors")
    (dst / "config.json").write_text(json.dumps(config if config is not None else
                                                json.loads((src / "config.json").read_text())))
    return dst


def one_line_error(source: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_model(source, device="cpu")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_preset_in_config(real: RealPresets, tmp_path: Path) -> None:
    _, folder = real.get("da3-small")
    message = one_line_error(copy_folder(folder, tmp_path / "giant", config={"model_name": "da3-giant"}))
    assert "da3-giant" in message and "not a supported" in message


def test_tensors_not_fitting_the_named_preset(real: RealPresets, tmp_path: Path) -> None:
    _, folder = real.get("da3-small")
    message = one_line_error(copy_folder(folder, tmp_path / "base", config={"model_name": "da3-base"}))
    assert "do not fit da3-base" in message and "width 384, want 768" in message


def test_unknown_key_refused(real: RealPresets, tmp_path: Path) -> None:
    _, folder = real.get("da3-small")
    extra = copy_folder(folder, tmp_path / "extra",
                        edit=lambda s: {**s, "model.head.scratch.mystery.weight": torch.zeros(3)})
    assert "unexpected keys" in one_line_error(extra) and "mystery" in one_line_error(extra)


@pytest.mark.parametrize("damage", ["missing", "misshaped"])
def test_used_tensor_missing_or_misshaped(real: RealPresets, tmp_path: Path, damage: str) -> None:
    _, folder = real.get("da3-small")
    key = "model.head.scratch.output_conv2.2.weight"

    def edit(state: dict) -> dict:
        if damage == "missing":
            return {k: v for k, v in state.items() if k != key}
        return {**state, key: torch.zeros(1, 32, 1, 1)}  # one channel: DualDPT has two

    message = one_line_error(copy_folder(folder, tmp_path / damage, edit=edit))
    assert "head.depth.conv2.weight" in message and "DA3-SMALL" in message


def test_v1_v2_options_refused(real: RealPresets) -> None:
    _, folder = real.get("da3-small")
    for option in ({"version": 2}, {"max_depth": 20.0}):
        with pytest.raises(CheckpointError, match="Depth-Anything V1/V2 checkpoints only"):
            read_checkpoint(folder, **option)


def _signature_only_state(width: int = 1024, blocks: int = 24) -> dict[str, torch.Tensor]:
    """Enough of a DA3MONO/METRIC-LARGE state dict for the preset to be read from the tensors."""
    state = {"model.backbone.pretrained.cls_token": torch.zeros(1, 1, width),
             "model.head.scratch.sky_output_conv2.0.weight": torch.zeros(1)}
    state.update({f"model.backbone.pretrained.blocks.{i}.ls1.gamma": torch.zeros(1) for i in range(blocks)})
    return state


def test_mono_or_metric_needs_a_config_or_a_name() -> None:
    state = _signature_only_state()
    assert da3_checkpoint.read(state, None, "/w/da3metric-large.safetensors")[0] == PRESETS["da3metric-large"]
    hub = "/cache/models--depth-anything--DA3MONO-LARGE/snapshots/0123/model.safetensors"
    assert da3_checkpoint.read(state, None, hub)[0] == PRESETS["da3mono-large"]
    assert da3_checkpoint.read(state, {"model_name": "da3metric-large"}, "/w/x.safetensors")[0].metric
    with pytest.raises(CheckpointError, match="same tensors"):
        da3_checkpoint.read(state, None, "/w/model.safetensors")
    with pytest.raises(CheckpointError, match="fit no Depth Anything 3 preset"):
        da3_checkpoint.read(_signature_only_state(blocks=12), None, "/w/da3mono-large.safetensors")


def test_recognise() -> None:
    assert da3_checkpoint.recognise(["model.backbone.pretrained.cls_token"], None)
    assert da3_checkpoint.recognise([], {"model_name": "DA3-SMALL"})
    assert da3_checkpoint.recognise([], {"model_name": "da3-giant"})  # read() says it is unsupported
    assert not da3_checkpoint.recognise(["pretrained.cls_token", "depth_head.projects.0.weight"], None)
    assert not da3_checkpoint.recognise(["backbone.embeddings.cls_token"], {"model_type": "depth_anything"})


# ----------------------------------------------------------------------------------- config
def test_presets_as_data() -> None:
    small, base, mono, metric = (PRESETS[p] for p in ("da3-small", "da3-base", "da3mono-large", "da3metric-large"))
    assert (small.encoder.embed_dim, base.encoder.embed_dim, mono.encoder.embed_dim) == (384, 768, 1024)
    for cfg in (small, base, mono):
        assert cfg.traits.kind == "relative depth" and not cfg.metric and cfg.traits.focal_divisor is None
    assert metric.traits.kind == "metric depth, metres" and metric.traits.focal_divisor == 300.0
    assert small.traits.outputs == ("depth",) and mono.traits.outputs == metric.traits.outputs == ("depth", "sky")
    for cfg in PRESETS.values():
        t = cfg.traits
        assert (t.family, t.resize, t.default_size, t.unit_dtype, t.align_corners) == (
            "depth_anything_3", "upper_bound", 504, "uint8", True)
        assert cfg.family == "depth_anything_3" and cfg.max_depth is None
        assert DA3Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert small.describe == "Depth Anything 3 DA3-SMALL, relative depth"
    assert metric.describe == "Depth Anything 3 DA3METRIC-LARGE, metric depth"


def test_config_and_postprocess_import_without_torch() -> None:
    code = ("import sys; import depthcli.model.depth_anything_3.config, depthcli.model.depth_anything_3.postprocess; "
            "from depthcli.model.depth_anything_3 import PRESETS; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------------- postprocess
def original_sky_fill(depth_hw: np.ndarray, sky_hw: np.ndarray) -> np.ndarray:
    original_da3()  # skips the test without the original code (or its addict)
    from addict import Dict
    from depth_anything_3.model.da3 import DepthAnything3Net

    out = Dict(depth=torch.from_numpy(depth_hw)[None, None].clone(), sky=torch.from_numpy(sky_hw)[None, None].clone())
    return DepthAnything3Net._process_mono_sky_estimation(None, out).depth[0, 0].numpy()


def sky_case(name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    depth = np.exp(rng.normal(0.5, 0.6, (48, 64))).astype(np.float32)
    sky = np.maximum(rng.normal(0.0, 0.3, (48, 64)), 0).astype(np.float32)
    flat = sky.reshape(-1)
    if name == "no sky":
        sky[:] = 0.1
    elif name.endswith("sky pixels"):  # "10 sky pixels", "11 sky pixels"
        sky[:] = 0.0
        flat[rng.choice(flat.size, int(name.split()[0]), replace=False)] = 0.9
    elif name.endswith("ground pixels"):
        sky[:] = 1.0
        flat[rng.choice(flat.size, int(name.split()[0]), replace=False)] = 0.0
    elif name == "threshold and nan":
        flat[:5] = 0.3  # not below the threshold: sky
        flat[5:9] = np.nan  # not below either
    return depth, sky


@pytest.mark.parametrize("case", ["sky", "no sky", "10 sky pixels", "11 sky pixels", "10 ground pixels",
                                  "11 ground pixels", "threshold and nan"])
def test_fill_sky_equals_the_original(case: str) -> None:
    rng = np.random.default_rng(len(case))
    depth, sky = sky_case(case, rng)
    before = depth.copy()
    ours = fill_sky(depth, sky)
    ref = original_sky_fill(depth, sky)
    assert np.array_equal(depth, before), "fill_sky modified its input"
    assert ours.dtype == ref.dtype and np.array_equal(ours, ref), f"{case}: max diff {np.abs(ours - ref).max()}"
    filled = not np.array_equal(ref, depth)
    assert filled == (case in ("sky", "11 sky pixels", "11 ground pixels", "threshold and nan"))


def test_fill_sky_quantile_is_torch_quantile_bitwise() -> None:
    """The fill value, for many sizes and spreads: torch.quantile's arithmetic, bit for bit."""
    rng = np.random.default_rng(0)
    for i in range(300):
        n = int(rng.integers(12, 20000))
        depth = np.exp(rng.normal(0, rng.uniform(0.1, 3), n)).astype(np.float32)[None]
        sky = np.zeros_like(depth)
        sky[0, :11] = 1.0
        want = torch.quantile(torch.from_numpy(depth[~(sky >= 0.3)]), 0.99).item()
        assert fill_sky(depth, sky)[0, 0] == np.float32(want), f"case {i}, {n} pixels"


def test_metric_scale_equals_the_original() -> None:
    apply_metric_scaling = original_da3().alignment.apply_metric_scaling
    depth = np.exp(np.random.default_rng(1).normal(0, 1, (30, 40))).astype(np.float32)
    focal = 412.7
    intrinsics = torch.tensor([[focal, 0, 20], [0, focal, 15], [0, 0, 1]], dtype=torch.float32)[None, None]
    ref = apply_metric_scaling(torch.from_numpy(depth)[None, None], intrinsics)[0, 0].numpy()
    ours = metric_scale(depth, focal)
    assert ours.dtype == np.float32
    assert np.abs(ours - ref).max() <= 2 * np.finfo(np.float32).eps * np.abs(ref).max()
    assert math.isclose(float(metric_scale(np.float64(300.0), 150.0)), 150.0)
