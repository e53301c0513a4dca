"""Pieces of depthcli's network checked on their own: attention, the position-encoding cache,
reduced precision, gradients and batching.

Run with ``-s`` to see the measured reduced-precision errors.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from model_factory import ModelSpec, ReferenceModels, assert_non_degenerate, max_rel_error, sample_image
from torch import nn

from depthcli import load_model
from depthcli.model import DepthAnything
from depthcli.model.dinov2.attention import Attention
from depthcli.model.dinov2.position_encoding import PositionEncoding

TINY_V1, TINY_V2 = ModelSpec("tiny", 1), ModelSpec("tiny", 2)
CPU = torch.device("cpu")


def load_tiny(reference_models: ReferenceModels, spec: ModelSpec = TINY_V2) -> DepthAnything:
    """depthcli's network with the perturbed tiny reference weights (non-degenerate output)."""
    return load_model(reference_models.get(spec).transformers_dir(), device="cpu")


# ----------------------------------------------------------------------------------- attention
def plain_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """softmax(q * scale @ k^T) @ v, spelled out, in the dtype of ``x``."""
    b, n, c = x.shape
    heads, d = attn.num_heads, c // attn.num_heads
    qkv = x @ attn.qkv.weight.T + attn.qkv.bias
    q, k, v = (t.reshape(b, n, heads, d).transpose(1, 2) for t in qkv.split(c, dim=-1))
    weights = torch.softmax((q * d**-0.5) @ k.transpose(-2, -1), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(b, n, c)
    return out @ attn.proj.weight.T + attn.proj.bias


# "auto" picks SDPA, or query-chunked matmuls for bf16/fp16 on the CPU; test each kernel directly
BACKENDS = ["sdpa", "chunked"] if hasattr(Attention, "backend") else ["default"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("dim", "heads", "tokens"), [(64, 1, 50), (64, 4, 37), (96, 6, 300)])
@torch.no_grad()
def test_attention_equals_plain_softmax(monkeypatch: pytest.MonkeyPatch, backend: str, dim: int, heads: int,
                                        tokens: int) -> None:
    if backend != "default":
        monkeypatch.setattr(Attention, "backend", backend)
    g = torch.Generator().manual_seed(dim + heads)
    attn = Attention(dim, heads)
    for p in attn.parameters():
        p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
    attn.qkv.weight.mul_(2)  # peaked attention, so a wrong scale or head split shows
    x = torch.randn(2, tokens, dim, generator=g)  # 300 tokens: more than one chunk of queries
    attn64, x64 = copy.deepcopy(attn).double(), x.double()
    exact = plain_attention(attn64, x64)
    # same maths: in float64 the two agree to rounding; in float32 both carry float32 rounding
    err64 = max_rel_error(attn64(x64), exact)
    err32 = max_rel_error(attn(x), plain_attention(attn, x))
    print(f"\nattention {backend} {dim}/{heads} heads: fp64 {err64:.1e}, fp32 {err32:.1e}, "
          f"fp32 vs exact {max_rel_error(attn(x), exact):.1e}")
    assert err64 <= 1e-12
    assert err32 <= 1e-6


# ----------------------------------------------------------------------------------- position encoding
def make_encoding(dim: int = 8, seed: int = 0) -> PositionEncoding:
    pe = PositionEncoding(dim)
    with torch.no_grad():
        pe.table.copy_(torch.randn(pe.table.shape, generator=torch.Generator().manual_seed(seed)))
    return pe


def resize_reference(table: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """The original DINOv2 resize, written independently: bicubic, scale (grid + 0.1) / 37."""
    side = math.isqrt(table.shape[1] - 1)
    patch = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
    patch = F.interpolate(patch, scale_factor=((grid_h + 0.1) / side, (grid_w + 0.1) / side), mode="bicubic",
                          align_corners=False)
    return torch.cat((table[:, :1], patch.flatten(2).transpose(1, 2)), dim=1)


@torch.no_grad()
def test_native_grid_uses_table_unchanged() -> None:
    pe = make_encoding()
    assert torch.equal(pe(37, 37, torch.float32), pe.table)
    assert torch.equal(pe(37, 37, torch.bfloat16), pe.table.to(torch.bfloat16))


@pytest.mark.parametrize(("grid_h", "grid_w"), [(26, 46), (19, 19), (37, 20), (40, 40)])
@torch.no_grad()
def test_resize_matches_original_formula(grid_h: int, grid_w: int) -> None:
    pe = make_encoding()
    out = pe(grid_h, grid_w, torch.float32)
    assert out.shape == (1, 1 + grid_h * grid_w, 8)
    assert torch.equal(out[:, 0], pe.table[:, 0])  # the class token's encoding is kept as is
    assert torch.equal(out, resize_reference(pe.table, grid_h, grid_w))


@torch.no_grad()
def test_cache_hit_skips_the_resize(monkeypatch: pytest.MonkeyPatch) -> None:
    pe = make_encoding()
    calls: list[tuple] = []
    resize = pe._resize
    monkeypatch.setattr(pe, "_resize", lambda *a: calls.append(a) or resize(*a))
    first, second, third = (pe(26, 46, torch.float32) for _ in range(3))
    assert len(calls) == 1
    assert second is third  # the cached tensor itself (the first call returns its undetached twin)
    assert torch.equal(first, second)


@torch.no_grad()
def test_cache_keeps_grid_dtype_and_device_apart() -> None:
    pe = make_encoding()
    a, b, c = pe(26, 46, torch.float32), pe(46, 26, torch.float32), pe(26, 46, torch.bfloat16)
    assert (a.shape, b.shape) == ((1, 1 + 26 * 46, 8), (1, 1 + 46 * 26, 8))
    assert not torch.equal(a, b.reshape(a.shape))
    assert c.dtype == torch.bfloat16 and a.dtype == torch.float32
    assert len(pe._cache) == 3
    assert all(CPU in key and (26 in key or 46 in key) for key in pe._cache), list(pe._cache)
    assert pe(26, 46, torch.float32) is pe(26, 46, torch.float32)
    assert torch.equal(pe(26, 46, torch.bfloat16), c)
    assert len(pe._cache) == 3  # hits add no entries


@pytest.mark.parametrize("assign", [False, True])
@torch.no_grad()
def test_cache_cleared_by_load_state_dict(assign: bool) -> None:
    pe = make_encoding(seed=0)
    parent = nn.ModuleDict({"pe": pe})  # loading through a parent module, as a model does
    stale = pe(26, 46, torch.float32)
    new_table = make_encoding(seed=1).table.detach().clone()
    parent.load_state_dict({"pe.table": new_table}, assign=assign)
    fresh = pe(26, 46, torch.float32)
    assert not torch.equal(fresh, stale)
    assert torch.equal(fresh, resize_reference(new_table, 26, 46))


@torch.no_grad()
def test_cache_invalidated_by_in_place_edit() -> None:
    pe = make_encoding()
    stale = pe(26, 46, torch.float32)
    pe.table.mul_(2)
    fresh = pe(26, 46, torch.float32)
    assert torch.allclose(fresh, 2 * stale, rtol=1e-6, atol=1e-6)
    assert torch.equal(fresh, resize_reference(pe.table, 26, 46))


def test_no_cache_while_training_the_table() -> None:
    """With autograd on, a cached (detached) encoding would cut the table off from its gradient."""
    pe = make_encoding()
    out = pe(26, 46, torch.float32)
    assert out.requires_grad and pe(26, 46, torch.float32) is not out
    out.sum().backward()
    assert pe.table.grad is not None and pe.table.grad.abs().sum() > 0


def test_encoding_created_in_inference_mode() -> None:
    with torch.inference_mode():
        pe = make_encoding()
        assert pe.table.is_inference()
        assert torch.equal(pe(26, 46, torch.float32), resize_reference(pe.table, 26, 46))


def test_model_loaded_in_inference_mode(reference_models: ReferenceModels) -> None:
    image = sample_image(seed=9, height=140, width=140)
    with torch.no_grad():
        expected = load_tiny(reference_models)(image)
    with torch.inference_mode():
        assert torch.equal(load_tiny(reference_models)(image), expected)


# ----------------------------------------------------------------------------------- whole network
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_reduced_precision_forward(reference_models: ReferenceModels, dtype: torch.dtype) -> None:
    model = load_tiny(reference_models)
    image = sample_image(seed=5, height=266, width=266)  # half-precision convolutions are slow on CPUs
    with torch.no_grad():
        full = model(image)
        low_model = copy.deepcopy(model).to(dtype)
        try:
            low = low_model(image.to(dtype))
        except (RuntimeError, NotImplementedError) as e:
            pytest.skip(f"{dtype} forward unsupported on this CPU build: {str(e).splitlines()[0]}")
    assert low.dtype == dtype
    err = max_rel_error(low.float(), full)
    print(f"\n{dtype} vs fp32: max|a-b|/max|b| = {err:.2e}")
    assert math.isfinite(err) and err < 0.1


def test_every_parameter_gets_a_gradient(reference_models: ReferenceModels) -> None:
    model = load_tiny(reference_models)
    model.requires_grad_(True)
    # a non-native 266 px input also sends the gradient through the position-encoding resize
    model(sample_image(seed=3, height=266, width=266)).sum().backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"parameters with no gradient: {dead}"


def test_batch_equals_single_forwards(reference_models: ReferenceModels) -> None:
    model = load_tiny(reference_models, TINY_V1)
    images = sample_image(seed=11, height=182, width=252, batch=2)
    with torch.no_grad():
        batched = model(images)
        singles = [model(images[i : i + 1])[0] for i in range(2)]
    assert batched.shape == (2, 182, 252)
    assert not torch.equal(singles[0], singles[1])
    for i, single in enumerate(singles):
        assert_non_degenerate(single)
        assert max_rel_error(batched[i], single) <= 1e-6
