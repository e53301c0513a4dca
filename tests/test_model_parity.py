"""depthcli's network against ``transformers.DepthAnythingForDepthEstimation`` on the same weights,
read through every checkpoint layout depthcli supports; and the ways a checkpoint can be bad.

Run with ``-s`` to see the measured parity errors.
"""
from __future__ import annotations

import math
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from model_factory import (
    PATCH,
    ModelSpec,
    Reference,
    ReferenceModels,
    assert_non_degenerate,
    hf_depth,
    max_rel_error,
    original_state_dict,
    sample_image,
    save_state_as_transformers_dir,
    to_pre_v5_keys,
    to_v5_keys,
    with_version,
)
from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings

from depthcli import load_model
from depthcli.model import CheckpointError, read_checkpoint, save_safetensors

PARITY_TOL = 1e-5
TINY_V1, TINY_V2, TINY_METRIC = ModelSpec("tiny", 1), ModelSpec("tiny", 2), ModelSpec("tiny", 2, metric=True)
VITS_V1, VITS_V2, VITS_METRIC = ModelSpec("vits", 1), ModelSpec("vits", 2), ModelSpec("vits", 2, metric=True)
TINY_SPECS = [TINY_V1, TINY_V2, TINY_METRIC]


def depthcli_depth(path: Path, image: torch.Tensor, **overrides: object) -> torch.Tensor:
    model = load_model(path, device="cpu", **overrides)
    with torch.no_grad():
        return model(image)


def assert_parity(label: str, actual: torch.Tensor, expected: torch.Tensor, tol: float = PARITY_TOL) -> float:
    """Both maps must be non-degenerate and agree to ``tol`` relative to the peak."""
    assert_non_degenerate(expected)
    assert_non_degenerate(actual)
    err = max_rel_error(actual, expected)
    print(f"\nparity {label}: max|a-b|/max|b| = {err:.2e}")
    assert err <= tol, f"{label}: relative error {err:.2e} > {tol:.0e}"
    return err


def reference_file(ref: Reference, layout: str) -> Path:
    return ref.original_pth() if layout == "original" else ref.transformers_dir()


# ----------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("spec", TINY_SPECS, ids=str)
def test_tiny_parity_through_transformers_dir(reference_models: ReferenceModels, spec: ModelSpec) -> None:
    ref = reference_models.get(spec)
    model = load_model(ref.transformers_dir(), device="cpu")
    assert model.config.version == spec.version
    assert model.config.max_depth == (20.0 if spec.metric else None)
    with torch.no_grad():
        assert_parity(f"{spec} save_pretrained", model(ref.image), ref.depth)


@pytest.mark.parametrize(("spec", "layout"), [
    (VITS_V1, "original"), (VITS_V1, "transformers"),
    (VITS_V2, "original"), (VITS_V2, "transformers"),
    (VITS_METRIC, "original"),  # the file name alone says metric, hypersim, 20 m
], ids=lambda v: str(v))
def test_vits_parity(reference_models: ReferenceModels, spec: ModelSpec, layout: str) -> None:
    ref = reference_models.get(spec)
    model = load_model(reference_file(ref, layout), device="cpu")
    assert (model.config.version, model.config.encoder.name) == (spec.version, "vits")
    assert model.config.max_depth == (20.0 if spec.metric else None)
    with torch.no_grad():
        assert_parity(f"{spec} {layout}", model(ref.image), ref.depth)


def original_interpolate_pos_encoding(self: Dinov2Embeddings, embeddings: torch.Tensor, height: int,
                                      width: int) -> torch.Tensor:
    """DINOv2's own resize, as Depth-Anything ships it: bicubic in float32 with
    ``scale_factor = (grid + 0.1) / side`` (transformers passes ``size = grid`` instead)."""
    table = self.position_embeddings
    n_table = table.shape[1] - 1
    if embeddings.shape[1] - 1 == n_table and height == width:
        return table
    side = math.isqrt(n_table)
    grid_h, grid_w = height // PATCH, width // PATCH
    patch = table[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, scale_factor=((grid_h + 0.1) / side, (grid_w + 0.1) / side),
                          mode="bicubic", align_corners=False)
    assert patch.shape[-2:] == (grid_h, grid_w)
    patch = patch.to(table.dtype).permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
    return torch.cat((table[:, :1], patch), dim=1)


def test_non_square_size_follows_original_position_resize(reference_models: ReferenceModels,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ref = reference_models.get(TINY_V2)
    image = sample_image(seed=364, height=364, width=644)
    hf_size_resize = hf_depth(ref.model, image)
    monkeypatch.setattr(Dinov2Embeddings, "interpolate_pos_encoding", original_interpolate_pos_encoding)
    hf_original_resize = hf_depth(ref.model, image)
    ours = depthcli_depth(ref.transformers_dir(), image)
    assert ours.shape == (1, 364, 644)
    assert_parity("tiny-v2 364x644 vs original resize", ours, hf_original_resize)
    sensitivity = max_rel_error(hf_size_resize, hf_original_resize)
    print(f"transformers size= vs original scale_factor= resize: {sensitivity:.2e}")
    assert sensitivity > 1e-4, "the test cannot tell the two position-encoding resizes apart"
    assert max_rel_error(ours, hf_size_resize) > 1e-4


@pytest.mark.parametrize("rename", [to_pre_v5_keys, to_v5_keys], ids=["pre-v5-keys", "v5-keys"])
def test_transformers_attention_key_layouts(reference_models: ReferenceModels, tmp_path: Path,
                                            rename: Callable[[dict], dict]) -> None:
    """transformers renamed attention.attention.query/... to attention.q_proj/... in v5; both
    layouts are on disk in the wild. (save_pretrained in v5 still writes the old names.)"""
    ref = reference_models.get(TINY_V2)
    state = rename(ref.model.state_dict())
    marker = ".attention.attention.query." if rename is to_pre_v5_keys else ".attention.q_proj."
    assert any(marker in k for k in state)
    folder = save_state_as_transformers_dir(ref.model, state, tmp_path / "renamed")
    ours = depthcli_depth(folder, ref.image)
    assert torch.equal(ours, depthcli_depth(ref.transformers_dir(), ref.image))
    assert_parity(f"tiny-v2 {rename.__name__}", ours, ref.depth)


@pytest.mark.parametrize("spec", TINY_SPECS, ids=str)
def test_safetensors_round_trip_is_bit_exact(reference_models: ReferenceModels, tmp_path: Path,
                                             spec: ModelSpec) -> None:
    ref = reference_models.get(spec)
    model = load_model(ref.transformers_dir(), device="cpu")
    save_safetensors(model, tmp_path / "model.safetensors")
    reloaded = load_model(tmp_path / "model.safetensors", device="cpu")
    assert reloaded.config == model.config
    with torch.no_grad():
        before, after = model(ref.image), reloaded(ref.image)
    assert_non_degenerate(after)
    assert torch.equal(before, after)


# ----------------------------------------------------------------------------------- versions
@pytest.mark.parametrize(("spec", "layout", "override"), [
    (VITS_V2, "original", 1),  # the name says V2
    (TINY_V1, "transformers", 2),  # config.json's out_indices say V1
], ids=["vits-v2-pth-as-v1", "tiny-v1-dir-as-v2"])
def test_version_override(reference_models: ReferenceModels, spec: ModelSpec, layout: str,
                          override: int) -> None:
    ref = reference_models.get(spec)
    ours = depthcli_depth(reference_file(ref, layout), ref.image, version=override)
    expected = hf_depth(with_version(ref.model, spec, override), ref.image)
    assert_parity(f"{spec} {layout} read as v{override}", ours, expected)
    difference = max_rel_error(ours, ref.depth)
    print(f"v{spec.version} vs v{override} taps: {difference:.2e}")
    assert difference > 1e-2, "the override did not change which blocks feed the head"


def test_pth_name_without_version_needs_model_version(reference_models: ReferenceModels,
                                                      tmp_path: Path) -> None:
    ref = reference_models.get(VITS_V2)
    unnamed = tmp_path / "weights.pth"
    unnamed.symlink_to(ref.original_pth())
    with pytest.raises(CheckpointError, match="--model-version"):
        read_checkpoint(unnamed)
    assert read_checkpoint(unnamed, version=2).config.taps == (2, 5, 8, 11)


def test_original_layout_carries_the_unused_keys_of_real_files(reference_models: ReferenceModels) -> None:
    """Real .pth files ship DINOv2's mask token and the never-called first unit of refinenet4."""
    state = original_state_dict(reference_models.get(TINY_V2).model)
    assert "pretrained.mask_token" in state
    assert {f"depth_head.scratch.refinenet4.resConfUnit1.conv{i}.{p}" for i in (1, 2)
            for p in ("weight", "bias")} <= set(state)
    assert state["pretrained.blocks.0.attn.qkv.weight"].shape == (3 * 64, 64)
    assert not any(k.startswith(("backbone.", "neck.", "head.")) for k in state)


# ----------------------------------------------------------------------------------- bad files
V2_NAME = "depth_anything_v2_vits.pth"  # a name that fixes the version, so only the content can fail


@pytest.fixture
def tiny_original_state(reference_models: ReferenceModels) -> dict[str, torch.Tensor]:
    return original_state_dict(reference_models.get(TINY_V2).model)


@pytest.fixture
def tiny_safetensors(reference_models: ReferenceModels, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.safetensors"
    save_safetensors(load_model(reference_models.get(TINY_V2).transformers_dir(), device="cpu"), path)
    return path


def _drop(key: str) -> Callable[[dict], None]:
    return lambda state: state.pop(key)


def _set(key: str, value: torch.Tensor) -> Callable[[dict], None]:
    return lambda state: state.__setitem__(key, value)


@pytest.mark.parametrize(("edit", "named"), [
    (_drop("depth_head.scratch.output_conv1.weight"), "head.conv1.weight"),
    (_drop("pretrained.blocks.3.attn.qkv.bias"), "encoder.blocks.3.attn.qkv.bias"),
    (_drop("pretrained.cls_token"), "encoder.cls_token"),
    (_set("depth_head.scratch.extra_conv.weight", torch.zeros(3)), "depth_head.scratch.extra_conv.weight"),
    (_set("pretrained.blocks.2.attn.qkv.weight", torch.zeros(5, 64)), "encoder.blocks.2.attn.qkv.weight"),
    (_set("depth_head.scratch.output_conv1.bias", torch.zeros(3)), "head.conv1.bias"),
], ids=["missing-head", "missing-qkv", "missing-cls", "unexpected", "shape-qkv", "shape-head"])
def test_bad_state_dict_names_the_key(tiny_original_state: dict, tmp_path: Path,
                                      edit: Callable[[dict], None], named: str) -> None:
    edit(tiny_original_state)
    torch.save(tiny_original_state, tmp_path / V2_NAME)
    with pytest.raises(CheckpointError, match=re.escape(named)):
        load_model(tmp_path / V2_NAME, device="cpu")


def test_unexpected_key_in_depthcli_file(tiny_safetensors: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(tiny_safetensors))
    state["head.conv4.weight"] = torch.zeros(1)
    metadata = {"format": "depthcli", "depthcli.version": "2"}
    save_file(state, str(tmp_path / "extra.safetensors"), metadata=metadata)
    with pytest.raises(CheckpointError, match=re.escape("head.conv4.weight")):
        load_model(tmp_path / "extra.safetensors", device="cpu")


def _truncated(tmp_path: Path, state: dict) -> bytes:
    torch.save(state, tmp_path / "whole.pth")
    data = (tmp_path / "whole.pth").read_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize("content", ["empty", "truncated", "random"])
def test_unreadable_pth(tiny_original_state: dict, tmp_path: Path, content: str) -> None:
    data = {
        "empty": lambda: b"",
        "truncated": lambda: _truncated(tmp_path, tiny_original_state),
        "random": lambda: bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(7),
                                              dtype=torch.uint8).tolist()),
    }[content]()
    (tmp_path / V2_NAME).write_bytes(data)
    with pytest.raises(CheckpointError):
        load_model(tmp_path / V2_NAME, device="cpu")


def write_marker(path: str) -> None:
    """What a malicious checkpoint would run on load; harmless here, but it leaves a trace."""
    Path(path).write_text("pwned")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (write_marker, (str(self.marker),))


def _save_payload(path: Path, marker: Path, fmt: str) -> None:
    state = {"pretrained.cls_token": torch.zeros(1, 1, 64), "evil": _Payload(marker)}
    if fmt == "torch.save":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state, protocol=2))


@pytest.mark.parametrize("fmt", ["torch.save", "raw-pickle"])
def test_code_executing_pickle_is_refused(tmp_path: Path, fmt: str) -> None:
    # control: an unrestricted load of the same file really runs the payload
    control_marker = tmp_path / "control-marker"
    _save_payload(tmp_path / "control.pth", control_marker, fmt)
    try:
        torch.load(tmp_path / "control.pth", weights_only=False)
    except Exception:  # noqa: BLE001 - the legacy loader may fail after unpickling; the payload ran
        pass
    assert control_marker.exists(), "the payload does not execute, so the test proves nothing"

    marker = tmp_path / "marker"
    _save_payload(tmp_path / V2_NAME, marker, fmt)
    with pytest.raises(CheckpointError):
        load_model(tmp_path / V2_NAME, device="cpu")
    assert not marker.exists(), "loading the checkpoint executed code"


@pytest.mark.parametrize("corruption", ["garbage-json", "huge-length", "short-file"])
@pytest.mark.parametrize("where", ["file", "folder"])
def test_corrupted_safetensors_header(tiny_safetensors: Path, tmp_path: Path,
                                      reference_models: ReferenceModels, corruption: str, where: str) -> None:
    data = bytearray(tiny_safetensors.read_bytes())
    if corruption == "garbage-json":
        data[8:40] = b"#" * 32
    elif corruption == "huge-length":
        data[:8] = (2**40).to_bytes(8, "little")
    else:
        data = data[:6]
    if where == "file":
        target = tmp_path / "model.safetensors"
        target.write_bytes(bytes(data))
    else:
        target = tmp_path / "hf"
        target.mkdir()
        config = reference_models.get(TINY_V2).transformers_dir() / "config.json"
        (target / "config.json").write_bytes(config.read_bytes())
        (target / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_model(target, device="cpu")


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "nowhere.pth")

