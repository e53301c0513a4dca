"""The ORIGINAL Video Depth Anything code (DepthAnything/Video-Depth-Anything @ 4f5ae23, Apache-2.0),
imported from the parity snapshot ``upstream_vda.tar.gz`` for the VDA tests: the reference
depthcli is compared with. Nothing of it is copied into depthcli: it is only run here.

Shared by tests/test_vda.py (the network and the schedules) and tests/test_cli_vda.py (the
installed tool):

- ``original_classes(tmp)``: a context that unpacks the snapshot (or uses the folder
  ``DEPTHCLI_VDA_UPSTREAM`` names), imports the original window and streaming classes, and on
  exit leaves no top-level ``utils`` / ``video_depth_anything`` / stand-in ``torchvision`` to the
  rest of the session; skips the test without the snapshot or the original's dependencies;
- ``randomize_``: check_vda.py's seeded perturbation (the zero-initialised motion-module
  outputs too) and a depth calibrated to ~3..10;
- ``tiny_original``: the original class built with the original's own modules at a tiny width
  (DINOv2 64 wide, 12 blocks so the vits taps 2, 5, 8, 11 apply; DPT features 32), which
  depthcli reads from the file like any other ``video_depth_anything_vits.pth``;
- ``make_clip`` / ``write_frames``: seeded clips (a pan over a smooth scene, a brightness drift
  and noise: every frame differs) and PNG frame folders of them (both sides see the same pixels).
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import sys
import tarfile
import types
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

SNAPSHOT = Path(__file__).resolve().parents[2] / "shared" / "parity" / "upstream_vda.tar.gz"
VITS = {"encoder": "vits", "features": 64, "out_channels": [48, 96, 192, 384]}
TINY_WIDTH, TINY_BLOCKS, TINY_HEADS, TINY_FEATURES, TINY_CHANNELS = 64, 12, 1, 32, [16, 32, 64, 64]


# ----------------------------------------------------------------------------------- the original
def upstream_root(tmp: Path) -> Path | None:
    """The unpacked original code: ``DEPTHCLI_VDA_UPSTREAM`` (a folder or the tarball), else the
    parity snapshot beside the checkout, unpacked into ``tmp``; None when neither is there."""
    given = os.environ.get("DEPTHCLI_VDA_UPSTREAM")
    for candidate in ([Path(given)] if given else []) + [SNAPSHOT]:
        if candidate.is_dir() and (candidate / "video_depth_anything").is_dir():
            return candidate
        if candidate.is_file():
            with tarfile.open(candidate) as tf:
                tf.extractall(tmp, filter="data")
            return tmp / "vda"
    return None


def shim_torchvision() -> list[str]:
    """The original imports torchvision only for ``transforms.Compose`` (apply in order): a
    stand-in when torchvision is absent. Returns the module names it added, to remove after."""
    with contextlib.suppress(ImportError):
        import torchvision.transforms  # noqa: F401
        return []

    class Compose:
        def __init__(self, transforms: list) -> None:
            self.transforms = transforms

        def __call__(self, x: object) -> object:
            for t in self.transforms:
                x = t(x)
            return x

    tv, tr = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
    tr.Compose, tv.transforms = Compose, tr
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tr})
    return ["torchvision", "torchvision.transforms"]


class OriginalClasses(types.SimpleNamespace):
    window: type  # video_depth.VideoDepthAnything (infer_video_depth)
    stream: type  # video_depth_stream.VideoDepthAnything (infer_video_depth_one)


@contextlib.contextmanager
def original_classes(tmp: Path) -> Iterator[OriginalClasses]:
    """The original classes, importable (with their modules) for as long as the context lasts."""
    root = upstream_root(tmp)
    if root is None:
        pytest.skip("the original Video-Depth-Anything code is not here (set DEPTHCLI_VDA_UPSTREAM)")
    pytest.importorskip("einops")
    pytest.importorskip("easydict")
    shims = shim_torchvision()
    sys.path.insert(0, str(root))
    logging.getLogger("dinov2").setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # "xFormers not available": the pure-torch path
            from video_depth_anything.video_depth import VideoDepthAnything as WindowVDA
            from video_depth_anything.video_depth_stream import VideoDepthAnything as StreamVDA
        yield OriginalClasses(window=WindowVDA, stream=StreamVDA)
    finally:  # leave no top-level ``utils`` / fake ``torchvision`` to the rest of the session
        sys.path.remove(str(root))
        for name in [*shims, *(m for m in sys.modules if m.split(".")[0] in ("utils", "video_depth_anything"))]:
            sys.modules.pop(name, None)


def tiny_original(cls: type, **kwargs: object) -> torch.nn.Module:
    """``cls`` (either original class) at a tiny width, of the original's own modules: DINOv2 as
    its ``vit_small`` builds it but 64 wide with one head (12 blocks: the vits taps), the
    temporal DPT head with 32 features. ``kwargs``: e.g. ``metric=True`` (window class only).
    Call inside ``original_classes``."""
    from functools import partial

    from video_depth_anything.dinov2 import DinoVisionTransformer
    from video_depth_anything.dinov2_layers import MemEffAttention
    from video_depth_anything.dinov2_layers import NestedTensorBlock as Block
    from video_depth_anything.dpt_temporal import DPTHeadTemporal

    model = cls(encoder="vits", features=TINY_FEATURES, out_channels=list(TINY_CHANNELS), **kwargs)
    model.pretrained = DinoVisionTransformer(  # the arguments of the original's DINOv2("vits")
        img_size=518, patch_size=14, embed_dim=TINY_WIDTH, depth=TINY_BLOCKS, num_heads=TINY_HEADS, mlp_ratio=4,
        block_fn=partial(Block, attn_class=MemEffAttention), init_values=1.0, ffn_layer="mlp", block_chunks=0,
        num_register_tokens=0, interpolate_antialias=False, interpolate_offset=0.1)
    model.head = DPTHeadTemporal(TINY_WIDTH, TINY_FEATURES, False, out_channels=list(TINY_CHANNELS))
    return model.eval()


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Every tensor non-trivial, the zero-initialised motion-module outputs too (as the parity
    script check_vda.py does), then the last conv calibrated so depth is ~3..10 before the ReLU."""
    g = torch.Generator().manual_seed(seed + 1)

    def rn(p: torch.Tensor, std: float) -> torch.Tensor:
        return torch.randn(p.shape, generator=g) * std

    for name, p in model.named_parameters():
        if name.endswith(".gamma"):
            p.copy_(0.6 + rn(p, 0.4))
        elif name == "pretrained.pos_embed":
            p.add_(rn(p, 0.6))
        elif name in ("pretrained.cls_token", "pretrained.mask_token"):
            p.copy_(rn(p, 1.0))
        elif "norm" in name and name.endswith(".weight"):
            p.copy_(1.0 + rn(p, 0.3))
        elif "norm" in name and name.endswith(".bias"):
            p.copy_(rn(p, 0.1))
        elif name.endswith("attn.qkv.weight"):
            p.mul_(3.0)
        elif "motion_modules" in name and float(p.abs().max()) == 0.0:
            p.copy_(rn(p, 0.05 if name.endswith(".bias") else 0.08))
        elif "motion_modules" in name and name.endswith(".weight") and p.dim() >= 2:
            p.mul_(2.0)
        elif name.endswith(".bias") and float(p.abs().max()) == 0.0:
            p.copy_(rn(p, 0.05))
        elif name.startswith("head.") and name.endswith(".weight") and p.dim() == 4:
            p.mul_(2.0)
    x = F.interpolate(torch.randn(8, 3, 5, 6, generator=g), size=(56, 70), mode="bilinear", align_corners=False)
    fit_last_conv(model, model.head.scratch.output_conv2[2], x.unsqueeze(0))


@torch.no_grad()
def fit_last_conv(model: torch.nn.Module, last: torch.nn.Conv2d, clip_btchw: torch.Tensor) -> None:
    """Scale and shift ``last`` (the convolution before the final ReLU) so that on this clip its
    output spans ~0..10: a random network's depth, neither all clipped nor all flat."""
    captured = {}
    hook = last.register_forward_hook(lambda m, i, o: captured.__setitem__("pre", o.detach().clone()))
    model(clip_btchw)
    hook.remove()
    pre = captured["pre"].flatten()
    lo, hi = torch.quantile(pre, 0.001), torch.quantile(pre, 0.995)
    lo = lo - 0.3 * (hi - lo)
    scale = 10.0 / float(hi - lo)
    last.weight.mul_(scale)
    last.bias.copy_((last.bias - lo) * scale)


# ----------------------------------------------------------------------------------- clips
def make_clip(n: int, h: int, w: int, seed: int) -> np.ndarray:
    """(n, h, w, 3) RGB uint8: a pan over a smooth random scene with a brightness drift and noise,
    so every frame differs."""
    rng = np.random.default_rng(seed)
    scene = cv2.resize(rng.uniform(0, 255, (6, 12, 3)).astype(np.float32), (w * 3, h * 2),
                       interpolation=cv2.INTER_CUBIC)
    frames = []
    for i in range(n):
        x0 = int(round(i * (scene.shape[1] - w) / max(n - 1, 1)))
        y0 = int(round((scene.shape[0] - h) * (0.5 + 0.4 * math.sin(i / 7.0))))
        f = scene[y0:y0 + h, x0:x0 + w] * (0.85 + 0.15 * math.sin(i / 5.0)) + rng.normal(0, 2.0, (h, w, 3))
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(frames)


def write_frames(folder: Path, clip_rgb: np.ndarray) -> Path:
    """The clip as a PNG frame folder (``f0000.png``, ...), which ``depthcli video`` reads as an
    image sequence: the same pixels the reference is given."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(clip_rgb):
        assert cv2.imwrite(str(folder / f"f{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder
