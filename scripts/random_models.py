"""Random but realistic Depth-Anything weights for the benchmark and precision scripts.

Published checkpoints cannot be downloaded everywhere (CI, air-gapped benchmark boxes), and a
speed or precision measurement only needs the real *shapes* plus weights that behave like
trained ones. So this module builds a model of a published size (vits, vitb, vitl, shapes from
``depthcli.model.ENCODERS``), redraws every parameter from a seeded generator, and calibrates the
last convolution so the depth map spans a healthy range: freshly initialised weights (layer
scales of 1, zero biases, a ReLU that clips almost everything) would give a near-constant map,
which hides precision loss and is not what a real model computes.

With ``transformers`` installed the weights are written as a ``save_pretrained`` folder, so
depthcli reads them through its real transformers-layout loader and transformers runs the very
same tensors. Without it they are built as a depthcli model and written in depthcli's own
safetensors format (peer comparisons are then impossible anyway).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from depthcli.model import ENCODERS, DepthAnything, EncoderConfig, ModelConfig, save_safetensors

PATCH = 14
NATIVE = 518
HEAD_HIDDEN = 32
CALIBRATION_SIZE = 266  # px: a quarter of a 518 px forward, plenty for a quantile estimate
CALIBRATION_QUANTILES = (0.02, 0.98)
RELATIVE_RANGE = (3.0, 10.0)  # head pre-activation span: positive, so the final ReLU clips ~nothing
DEFAULT_SEED = 1234
# Bumped whenever the recipe below changes, so cached weights (--weights-dir) are never stale.
RECIPE_VERSION = 2
POSITION_SCALE = 0.6  # position encodings comparable to the patch embeddings, so they matter
POSITION_COARSE_GRID = 6  # smoothness of the random position table: ~6 bumps across the image
POSITION_NOISE = 0.1


def has_transformers() -> bool:
    """Whether the peer implementation can be imported (it is an optional test dependency)."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def encoder(name: str) -> EncoderConfig:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    return ENCODERS[name]


def transformers_out_indices(enc: EncoderConfig) -> list[int]:
    """transformers counts the embedding as stage 0, so block i is stage i + 1:
    V2 vits/vitb [3, 6, 9, 12], vitl [5, 12, 18, 24]."""
    return [t + 1 for t in enc.v2_taps]


# ----------------------------------------------------------------------------------- weights
def _fan_in(module: nn.Module) -> int:
    if isinstance(module, nn.ConvTranspose2d):  # stride == kernel: one tap per input channel
        return module.in_channels
    return module.weight[0].numel()


@torch.no_grad()
def randomize_(model: nn.Module, seed: int) -> None:
    """Give every parameter a seeded, non-degenerate value.

    Works on both transformers' and depthcli's module trees (it keys on module types and the
    few parameter names that differ). Every parameter must be covered: models are built on the
    meta device and materialised with uninitialised memory, so a missed one would be garbage.
    """
    g = torch.Generator().manual_seed(seed)

    def randn(like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=g, dtype=torch.float32).to(like.dtype)

    done: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            # variance-preserving; linear layers a bit smaller so q.k logits stay moderate
            gain = 0.5 if isinstance(module, nn.Linear) else 1.0
            if name.endswith(("head.conv1", "head.conv2", "head.conv3")):
                gain *= 2.0
            module.weight.copy_(randn(module.weight) * gain / math.sqrt(_fan_in(module)))
            # sharper attention than a uniform softmax: q and k projections x3
            if name.endswith(("q_proj", "k_proj", "attention.query", "attention.key")):
                module.weight.mul_(3.0)
            elif name.endswith("attn.qkv"):  # depthcli's fused projection: rows are q, k, v
                module.weight[: 2 * module.weight.shape[0] // 3].mul_(3.0)
            done.add(id(module.weight))
            if module.bias is not None:
                module.bias.copy_(0.05 * randn(module.bias))
                done.add(id(module.bias))
        elif isinstance(module, nn.LayerNorm):
            module.weight.copy_(1.0 + 0.3 * randn(module.weight))
            module.bias.copy_(0.1 * randn(module.bias))
            done.update((id(module.weight), id(module.bias)))
    for name, p in model.named_parameters():
        if id(p) in done:
            continue
        if name.endswith(("lambda1", "gamma")):  # LayerScale
            p.copy_(0.6 + 0.4 * randn(p))
        elif name.endswith(("position_embeddings", "position_encoding.table")):
            p.copy_(_smooth_position_table(p, g))
        elif name.endswith(("cls_token", "mask_token")):
            p.copy_(randn(p))
        else:
            raise RuntimeError(f"randomize_: no rule for parameter {name}")
        done.add(id(p))


def _smooth_position_table(table: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A (1, 1 + n*n, C) table whose patch part varies smoothly over the grid, as learned ones
    do. White noise would make any two resize formulas (depthcli follows the original's
    ``scale_factor``, transformers passes ``size``) look ~10x further apart than on real weights."""
    n = math.isqrt(table.shape[1] - 1)
    channels = table.shape[2]
    coarse = torch.randn(1, channels, POSITION_COARSE_GRID, POSITION_COARSE_GRID, generator=g)
    grid = nn.functional.interpolate(coarse, size=(n, n), mode="bicubic", align_corners=False)
    patch = grid.permute(0, 2, 3, 1).reshape(1, n * n, channels)
    patch = patch + POSITION_NOISE * torch.randn(patch.shape, generator=g)
    cls = torch.randn(1, 1, channels, generator=g)
    return (POSITION_SCALE * torch.cat((cls, patch), dim=1)).to(table.dtype)


def sample_input(height: int, width: int, seed: int = DEFAULT_SEED) -> torch.Tensor:
    """A normalised-image-like (1, 3, H, W) float32 input: smooth structure plus pixel noise.

    Pure noise would make every patch alike; real images have large smooth regions and edges,
    which is what exercises the position encoding and the DPT head.
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 3, max(2, height // 32), max(2, width // 32), generator=g)
    smooth = nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return smooth + 0.5 * torch.randn(1, 3, height, width, generator=g)


@torch.no_grad()
def calibrate_head_(model: nn.Module, forward: Callable[[torch.Tensor], object]) -> None:
    """Scale and shift ``head.conv3`` (same name in both trees) so its output quantiles land
    on ``RELATIVE_RANGE``: a depth map with real spread and nothing clipped by the final ReLU."""
    conv: nn.Conv2d = model.head.conv3  # type: ignore[assignment]
    captured: list[torch.Tensor] = []
    handle = conv.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        forward(sample_input(CALIBRATION_SIZE, CALIBRATION_SIZE, seed=DEFAULT_SEED + 1))
    finally:
        handle.remove()
    q = torch.tensor(CALIBRATION_QUANTILES, dtype=torch.float64)
    lo, hi = torch.quantile(captured[0].flatten().double(), q).tolist()
    scale = (RELATIVE_RANGE[1] - RELATIVE_RANGE[0]) / max(hi - lo, 1e-12)
    shift = RELATIVE_RANGE[0] - scale * lo
    conv.weight.mul_(scale)
    conv.bias.mul_(scale).add_(shift)


# ----------------------------------------------------------------------------------- builders
def _transformers_model(enc: EncoderConfig) -> nn.Module:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(
        hidden_size=enc.embed_dim, num_hidden_layers=enc.depth, num_attention_heads=enc.num_heads,
        mlp_ratio=int(enc.mlp_ratio), image_size=NATIVE, patch_size=PATCH, layerscale_value=1.0,
        out_indices=transformers_out_indices(enc), reshape_hidden_states=False, apply_layernorm=True)
    config = DepthAnythingConfig(
        backbone_config=backbone, patch_size=PATCH, reassemble_hidden_size=enc.embed_dim,
        neck_hidden_sizes=list(enc.out_channels), fusion_hidden_size=enc.features,
        head_hidden_size=HEAD_HIDDEN, depth_estimation_type="relative")
    with torch.device("meta"):  # skip transformers' own init: every tensor is redrawn anyway
        model = DepthAnythingForDepthEstimation(config)
    return model.to_empty(device="cpu").eval()


def _depthcli_model(enc: EncoderConfig) -> DepthAnything:
    with torch.device("meta"):
        model = DepthAnything(ModelConfig(enc, version=2))
    return model.to_empty(device="cpu").eval()


@dataclass(frozen=True)
class RandomWeights:
    """Where a random model was written and in which layout."""

    encoder: str
    path: Path  # a transformers folder, or a depthcli .safetensors file
    layout: str  # "transformers" or "depthcli"
    seed: int


def build_weights(name: str, root: Path, seed: int = DEFAULT_SEED, *,
                  prefer_transformers: bool = True) -> RandomWeights:
    """Write (or reuse, if already under ``root``) a random V2 relative model of size ``name``.

    Reuse matters for vitl, whose build and 1.3 GB write take a while; the seed and the recipe
    version are part of the path, so a different seed or recipe never picks up stale weights.
    """
    enc = encoder(name)
    root.mkdir(parents=True, exist_ok=True)
    if prefer_transformers and has_transformers():
        folder = root / f"{name}-seed{seed}-r{RECIPE_VERSION}-transformers"
        if not (folder / "config.json").exists() or not (folder / "model.safetensors").exists():
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
            model = _transformers_model(enc)
            randomize_(model, seed)
            calibrate_head_(model, lambda x: model(pixel_values=x))
            model.save_pretrained(folder)
        return RandomWeights(name, folder, "transformers", seed)
    file = root / f"{name}-seed{seed}-r{RECIPE_VERSION}-depthcli.safetensors"
    if not file.exists():
        model = _depthcli_model(enc)
        randomize_(model, seed)
        calibrate_head_(model, model)
        save_safetensors(model, file)
    return RandomWeights(name, file, "depthcli", seed)


# ----------------------------------------------------------------------------------- metrics
def relative_errors(actual: torch.Tensor, expected: torch.Tensor) -> tuple[float, float]:
    """(max|a-b| / max|b|, mean|a-b| / mean|b|): scale-free, one number each; the first is the
    worst pixel, the second what a typical pixel sees."""
    a, b = actual.detach().double().cpu(), expected.detach().double().cpu()
    if a.shape != b.shape:
        raise ValueError(f"shape {tuple(a.shape)} != {tuple(b.shape)}")
    diff = (a - b).abs()
    return float(diff.max() / b.abs().max()), float(diff.mean() / b.abs().mean())
