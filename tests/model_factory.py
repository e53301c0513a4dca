"""Random but non-degenerate Depth-Anything reference models, built with ``transformers``.

The parity tests compare depthcli with ``DepthAnythingForDepthEstimation`` on the same weights.
Freshly initialised weights are a poor test: layer scales of 1, zero biases, tiny position
embeddings and a head whose ReLU clips almost everything would let whole code paths (a swapped
bias, a skipped position encoding, a wrong fusion order) go unnoticed. So every model built here
is perturbed with a seeded generator until every parameter visibly changes the output, and its
last convolution is calibrated so the depth map spans a healthy range.

The writers produce the three on-disk layouts depthcli reads: a ``save_pretrained`` folder, the
original ``.pth`` state dict (its key mapping is written here from the transformers names, on
purpose independently of ``depthcli.model.checkpoint_keys``) and depthcli's own safetensors.
"""
from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()

NATIVE_SIZE = 518
PATCH = 14
METRIC_MAX_DEPTH = 20.0  # hypersim, the indoor metric model
RELATIVE_RANGE = (3.0, 10.0)  # head pre-activation span: positive, so ReLU clips almost nothing
METRIC_RANGE = (-2.0, 2.0)  # keeps the sigmoid away from saturation
CALIBRATION_QUANTILES = (0.02, 0.98)
CALIBRATION_SIZE = 266


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    neck: tuple[int, int, int, int]
    fusion: int


SHAPES: dict[str, Shape] = {
    # 8 layers, so that V1 (last four blocks) and V2 (every second block) taps differ
    "tiny": Shape(64, 8, 2, (8, 16, 32, 64), 32),
    "vits": Shape(384, 12, 6, (48, 96, 192, 384), 64),  # the published small model
}

ORIGINAL_FILE_NAMES = {
    (1, False): "depth_anything_vits14.pth",
    (2, False): "depth_anything_v2_vits.pth",
    (2, True): "depth_anything_v2_metric_hypersim_vits.pth",
}


@dataclass(frozen=True)
class ModelSpec:
    size: str  # a key of SHAPES
    version: int  # 1 or 2: which blocks feed the head
    metric: bool = False

    @property
    def shape(self) -> Shape:
        return SHAPES[self.size]

    @property
    def seed(self) -> int:
        return zlib.crc32(repr(self).encode())

    def __str__(self) -> str:
        return f"{self.size}-v{self.version}{'-metric' if self.metric else ''}"


def out_indices(layers: int, version: int) -> list[int]:
    """Backbone stages fed to the head (stage 0 is the embedding): V1 the last four blocks, V2
    four evenly spaced blocks ending at the last one ([3, 6, 9, 12] for 12 layers)."""
    if version == 1:
        return list(range(layers - 3, layers + 1))
    step = layers // 4
    return [layers - step * (3 - i) for i in range(4)]


def hf_config(spec: ModelSpec, version: int | None = None) -> DepthAnythingConfig:
    s = spec.shape
    backbone = Dinov2Config(
        hidden_size=s.hidden, num_hidden_layers=s.layers, num_attention_heads=s.heads, image_size=NATIVE_SIZE,
        patch_size=PATCH, layerscale_value=1.0, out_indices=out_indices(s.layers, version or spec.version),
        reshape_hidden_states=False, apply_layernorm=True)
    # eager attention: an explicit softmax, independent of the SDPA kernel depthcli uses
    backbone._attn_implementation = "eager"
    config = DepthAnythingConfig(
        backbone_config=backbone, patch_size=PATCH, reassemble_hidden_size=s.hidden,
        neck_hidden_sizes=list(s.neck), fusion_hidden_size=s.fusion, head_hidden_size=32,
        depth_estimation_type="metric" if spec.metric else "relative",
        max_depth=int(METRIC_MAX_DEPTH) if spec.metric else 1)  # the config field is an int
    config._attn_implementation = "eager"
    return config


def sample_image(seed: int, height: int = NATIVE_SIZE, width: int = NATIVE_SIZE,
                 batch: int = 1) -> torch.Tensor:
    """A normalised-image-like input: smooth structure plus pixel noise, unit scale."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, 3, max(2, height // 32), max(2, width // 32), generator=g)
    smooth = nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return smooth + 0.5 * torch.randn(batch, 3, height, width, generator=g)


@torch.no_grad()
def hf_depth(model: DepthAnythingForDepthEstimation, image: torch.Tensor) -> torch.Tensor:
    return model(pixel_values=image).predicted_depth


# ----------------------------------------------------------------------------------- weights
def _randn(like: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.randn(like.shape, generator=g, dtype=like.dtype)


def _fan_in(module: nn.Module) -> int:
    if isinstance(module, nn.ConvTranspose2d):  # stride == kernel: one tap per input channel
        return module.in_channels
    return module.weight[0].numel()


@torch.no_grad()
def redraw_weights_(model: DepthAnythingForDepthEstimation, g: torch.Generator) -> None:
    """Variance-preserving weights. transformers' init (std 0.02) shrinks the signal at every
    convolution, leaving a depth map that is a bias-driven constant plus border artefacts."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            gain = 0.5 if isinstance(module, nn.Linear) else 1.0  # keeps x3 q/k logits moderate
            module.weight.copy_(_randn(module.weight, g) * gain / math.sqrt(_fan_in(module)))


@torch.no_grad()
def perturb_(model: DepthAnythingForDepthEstimation, seed: int) -> None:
    """Move every parameter away from its symmetric initial value, so each one matters."""
    g = torch.Generator().manual_seed(seed)
    redraw_weights_(model, g)
    for name, p in model.named_parameters():
        if name.endswith("lambda1"):  # LayerScale
            p.copy_(0.6 + 0.4 * _randn(p, g))
        elif name.endswith("position_embeddings"):
            p.add_(0.6 * _randn(p, g))
        elif name.endswith(("cls_token", "mask_token")):
            p.copy_(_randn(p, g))
        elif re.search(r"(norm[12]|layernorm)\.weight\Z", name):
            p.copy_(1 + 0.3 * _randn(p, g))
        elif re.search(r"(norm[12]|layernorm)\.bias\Z", name):
            p.copy_(0.1 * _randn(p, g))
        elif name.endswith("bias") and not p.any():
            p.copy_(0.05 * _randn(p, g))
        if re.search(r"attention\.[qk]_proj\.weight\Z", name):
            p.mul_(3)  # sharper attention: uniform softmax would hide q/k mistakes
        elif re.fullmatch(r"head\.conv[123]\.weight", name):
            p.mul_(2)


@torch.no_grad()
def calibrate_head_(model: DepthAnythingForDepthEstimation, image: torch.Tensor,
                    target: tuple[float, float]) -> None:
    """Scale and shift the last convolution so its output quantiles land on ``target``."""
    captured: list[torch.Tensor] = []
    handle = model.head.conv3.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        hf_depth(model, image)
    finally:
        handle.remove()
    lo, hi = torch.quantile(captured[0].flatten().double(), torch.tensor(CALIBRATION_QUANTILES).double())
    scale = (target[1] - target[0]) / float(hi - lo)
    shift = target[0] - scale * float(lo)
    conv = model.head.conv3
    conv.weight.mul_(scale)
    conv.bias.mul_(scale).add_(shift)


def build_hf_model(spec: ModelSpec) -> DepthAnythingForDepthEstimation:
    """A perturbed, calibrated transformers model in eval mode; deterministic per spec."""
    with torch.random.fork_rng():  # seed transformers' own initialisation, leave global RNG alone
        torch.manual_seed(spec.seed)
        model = DepthAnythingForDepthEstimation(hf_config(spec)).eval()
    perturb_(model, spec.seed)
    # a 266 px image: a quarter of the cost of a 518 px forward, close enough for a rough range
    calibration_image = sample_image(spec.seed + 1, CALIBRATION_SIZE, CALIBRATION_SIZE)
    calibrate_head_(model, calibration_image, METRIC_RANGE if spec.metric else RELATIVE_RANGE)
    return model


def with_version(model: DepthAnythingForDepthEstimation, spec: ModelSpec,
                 version: int) -> DepthAnythingForDepthEstimation:
    """The same weights read through the other version's taps (transformers' out_indices)."""
    with torch.random.fork_rng():  # its throw-away initialisation must not move the global RNG
        other = DepthAnythingForDepthEstimation(hf_config(spec, version=version)).eval()
    other.load_state_dict(model.state_dict(), strict=True)
    return other


# ----------------------------------------------------------------------------------- layouts
_ATTENTION_V5_TO_PRE_V5 = {"q_proj": "attention.query", "k_proj": "attention.key",
                           "v_proj": "attention.value", "o_proj": "output.dense"}


def to_pre_v5_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers < 5 names: ``attention.attention.query`` ... ``attention.output.dense``."""
    pattern = re.compile(r"\.attention\.(q_proj|k_proj|v_proj|o_proj)\.")
    new_name = {k: f".attention.{v}." for k, v in _ATTENTION_V5_TO_PRE_V5.items()}
    return {pattern.sub(lambda m: new_name[m[1]], k): v for k, v in state.items()}


def to_v5_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers >= 5 names: ``attention.q_proj`` ... ``attention.o_proj``."""
    inverse = {old: new for new, old in _ATTENTION_V5_TO_PRE_V5.items()}
    pattern = re.compile(r"\.attention\.(attention\.query|attention\.key|attention\.value|output\.dense)\.")
    return {pattern.sub(lambda m: f".attention.{inverse[m[1]]}.", k): v for k, v in state.items()}


def _fusion_name(m: re.Match[str]) -> str:
    """transformers runs fusion coarsest first: its layer 0 is the original refinenet4."""
    refinenet = f"depth_head.scratch.refinenet{4 - int(m['i'])}"
    if m["part"] == "projection":
        return f"{refinenet}.out_conv.{m['p']}"
    unit, conv = re.fullmatch(r"residual_layer([12])\.convolution([12])", m["part"]).groups()
    return f"{refinenet}.resConfUnit{unit}.conv{conv}.{m['p']}"


_LAYER = r"backbone\.encoder\.layer\.(?P<n>\d+)\."
_TO_ORIGINAL: list[tuple[str, str | Callable[[re.Match[str]], str]]] = [
    (r"backbone\.embeddings\.cls_token", "pretrained.cls_token"),
    (r"backbone\.embeddings\.mask_token", "pretrained.mask_token"),
    (r"backbone\.embeddings\.position_embeddings", "pretrained.pos_embed"),
    (r"backbone\.embeddings\.patch_embeddings\.projection\.(?P<p>\w+)", "pretrained.patch_embed.proj.{p}"),
    (_LAYER + r"norm(?P<k>[12])\.(?P<p>\w+)", "pretrained.blocks.{n}.norm{k}.{p}"),
    (_LAYER + r"attention\.o_proj\.(?P<p>\w+)", "pretrained.blocks.{n}.attn.proj.{p}"),
    (_LAYER + r"layer_scale(?P<k>[12])\.lambda1", "pretrained.blocks.{n}.ls{k}.gamma"),
    (_LAYER + r"mlp\.(?P<fc>fc[12])\.(?P<p>\w+)", "pretrained.blocks.{n}.mlp.{fc}.{p}"),
    (r"backbone\.layernorm\.(?P<p>\w+)", "pretrained.norm.{p}"),
    (r"neck\.reassemble_stage\.layers\.(?P<i>\d)\.projection\.(?P<p>\w+)", "depth_head.projects.{i}.{p}"),
    (r"neck\.reassemble_stage\.layers\.(?P<i>\d)\.resize\.(?P<p>\w+)", "depth_head.resize_layers.{i}.{p}"),
    (r"neck\.convs\.(?P<i>\d)\.weight", lambda m: f"depth_head.scratch.layer{int(m['i']) + 1}_rn.weight"),
    (r"neck\.fusion_stage\.layers\.(?P<i>\d)\.(?P<part>projection|residual_layer[12]\.convolution[12])"
     r"\.(?P<p>\w+)", _fusion_name),
    (r"head\.conv1\.(?P<p>\w+)", "depth_head.scratch.output_conv1.{p}"),
    (r"head\.conv2\.(?P<p>\w+)", "depth_head.scratch.output_conv2.0.{p}"),
    (r"head\.conv3\.(?P<p>\w+)", "depth_head.scratch.output_conv2.2.{p}"),
]
_QKV = re.compile(_LAYER + r"attention\.(?P<which>[qkv])_proj\.(?P<p>weight|bias)")


def original_state_dict(model: DepthAnythingForDepthEstimation) -> dict[str, torch.Tensor]:
    """The weights under the original repositories' names, q/k/v fused into one ``qkv``."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for name, tensor in to_v5_keys(model.state_dict()).items():
        if m := _QKV.fullmatch(name):
            qkv.setdefault((m["n"], m["p"]), {})[m["which"]] = tensor
            continue
        for pattern, target in _TO_ORIGINAL:
            if m := re.fullmatch(pattern, name):
                out[target(m) if callable(target) else target.format(**m.groupdict())] = tensor.clone()
                break
        else:
            raise KeyError(f"no original name for {name}")
    for (n, p), parts in qkv.items():
        out[f"pretrained.blocks.{n}.attn.qkv.{p}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def save_original_pth(model: DepthAnythingForDepthEstimation, path: Path) -> Path:
    torch.save(original_state_dict(model), path)
    return path


def save_transformers_dir(model: DepthAnythingForDepthEstimation, path: Path) -> Path:
    model.save_pretrained(path)
    return path


def save_state_as_transformers_dir(model: DepthAnythingForDepthEstimation, state: dict[str, torch.Tensor],
                                   path: Path) -> Path:
    """A model folder whose weights file holds exactly ``state`` (any key layout)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(model.config.to_dict()))
    save_file({k: v.contiguous() for k, v in state.items()}, str(path / "model.safetensors"))
    return path


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


# ----------------------------------------------------------------------------------- checks
def max_rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max|a - b| / max|b|: one number per comparison, scale-free."""
    a, b = actual.detach().double(), expected.detach().double()
    assert a.shape == b.shape, f"shape {tuple(a.shape)} != {tuple(b.shape)}"
    return float((a - b).abs().max() / b.abs().max())


def assert_non_degenerate(depth: torch.Tensor) -> None:
    """A parity result only means something if the depth map has real structure."""
    d = depth.detach().double()
    assert torch.isfinite(d).all(), "non-finite depth"
    peak = float(d.abs().max())
    assert peak > 0, "all-zero depth"
    assert float(d.std()) / peak > 0.05, f"flat depth: std/max = {float(d.std()) / peak:.4f}"
    zeros = float((d == 0).double().mean())
    assert zeros < 0.05, f"{zeros:.1%} of the depth map is clipped to zero"
    distinct = d.unique().numel()
    assert distinct >= min(1000, d.numel() // 4), f"only {distinct} distinct depth values"


# ----------------------------------------------------------------------------------- cache
@dataclass
class Reference:
    """A transformers model, a fixed input, its output, and checkpoint files written on demand."""

    spec: ModelSpec
    model: DepthAnythingForDepthEstimation
    image: torch.Tensor
    depth: torch.Tensor
    workdir: Path
    _files: dict[str, Path] = field(default_factory=dict)

    def _file(self, kind: str, write: Callable[[Path], Path], name: str) -> Path:
        if kind not in self._files:
            self._files[kind] = write(self.workdir / name)
        return self._files[kind]

    def transformers_dir(self) -> Path:
        """``save_pretrained`` output (transformers 5 writes the pre-v5 attention names)."""
        return self._file("transformers", lambda p: save_transformers_dir(self.model, p), "hf")

    def original_pth(self) -> Path:
        """The original ``.pth`` under its published file name."""
        name = ORIGINAL_FILE_NAMES[(self.spec.version, self.spec.metric)]
        return self._file("original", lambda p: save_original_pth(self.model, p), name)


class ReferenceModels:
    """Builds each reference model once per session: the real-size ones cost seconds."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[ModelSpec, Reference] = {}

    def get(self, spec: ModelSpec) -> Reference:
        if spec not in self._cache:
            model = build_hf_model(spec)
            image = sample_image(spec.seed + 2)
            workdir = self.root / str(spec)
            workdir.mkdir(parents=True, exist_ok=True)
            self._cache[spec] = Reference(spec, model, image, hf_depth(model, image), workdir)
        return self._cache[spec]
