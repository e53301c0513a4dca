"""The ORIGINAL Depth Anything 3 code (ByteDance-Seed/Depth-Anything-3 @ 2c21ea8, Apache-2.0),
imported from the parity snapshot for the DA3 tests: the reference depthcli is compared with.

``original_da3()`` unpacks ``upstream_da3.tar.gz`` into a temporary folder once per session and
imports its ``DepthAnything3`` wrapper the way ``shared/parity/check_da3.py`` does: empty modules
for ``evo`` (multi-view pose alignment), a no-op ``depth_anything_3.utils.export`` (exporters),
and a ``torchvision.transforms`` shim (the PyPI torchvision wheel does not load against the CPU
torch here). None of them is on the single-image depth path. Tests skip when the snapshot is
absent. Nothing of the original is copied into depthcli: it is only run here.

``randomize`` / ``calibrate`` give seeded weights that exercise every part (non-zero biases,
layer scales and norms away from their initial values, a camera token, depth logits in a useful
range and about a quarter of the pixels sky), as the parity harness does.

Shared by tests/test_da3.py (the network) and tests/test_cli_da3.py (the installed tool):
``tiny_pair`` (a small original network and depthcli's with the same weights), ``RealPresets``
(the four presets at their published sizes, as Hub folders) and ``original_pipeline`` (what
``shared/parity/check_da3.py`` takes as the truth for one photo: InputProcessor
"upper_bound_resize" -> the network with its sky fill -> metres for DA3METRIC -> bilinear,
``align_corners=True``, to the photo's size).
"""
from __future__ import annotations

import atexit
import contextlib
import importlib.abc
import importlib.machinery
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

SNAPSHOT_CANDIDATES = [
    os.environ.get("DEPTHCLI_DA3_SNAPSHOT", ""),
    str(Path(__file__).resolve().parents[2] / "shared" / "parity" / "upstream_da3.tar.gz"),
]
_MODULE: types.ModuleType | None = None


def snapshot() -> Path | None:
    for candidate in SNAPSHOT_CANDIDATES:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


class _EmptyModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``evo`` (pose alignment of several views) as empty modules: never run for one image."""

    ROOTS = ("evo",)

    def find_spec(self, name, path, target=None):  # noqa: ANN001, ANN201, ARG002
        if name.split(".")[0] in self.ROOTS:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):  # noqa: ANN001, ANN201
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = _placeholder
        return module

    def exec_module(self, module):  # noqa: ANN001, ANN201
        pass


def _placeholder(attr: str) -> type:
    """Any name of a stubbed module is an empty class; dunders stay missing (``inspect`` asks a
    module for ``__file__`` and must not get a class)."""
    if attr.startswith("__"):
        raise AttributeError(attr)
    return type(attr, (), {})


def _torchvision_shim() -> list[str]:
    """Stand-ins for the torchvision transforms the original imports; returns the module names it
    added, which ``original_da3`` removes once the original is imported (a later ``import
    transformers`` in the same session must not find a fake torchvision)."""
    if "torchvision" in sys.modules:
        return []
    tv, tr = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")

    class ToTensor:
        def __call__(self, pic):  # noqa: ANN001, ANN204
            a = np.asarray(pic)
            a = a[:, :, None] if a.ndim == 2 else a
            return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float().div(255)

    class Normalize:
        def __init__(self, mean, std) -> None:  # noqa: ANN001
            self.mean, self.std = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]

        def __call__(self, t):  # noqa: ANN001, ANN204
            return (t - self.mean) / self.std

    class Compose:
        def __init__(self, ts) -> None:  # noqa: ANN001
            self.ts = ts

        def __call__(self, x):  # noqa: ANN001, ANN204
            for t in self.ts:
                x = t(x)
            return x

    class CenterCrop:
        def __init__(self, size) -> None:  # noqa: ANN001
            raise NotImplementedError("never cropped here")

    tr.ToTensor, tr.Normalize, tr.Compose, tr.CenterCrop = ToTensor, Normalize, Compose, CenterCrop
    tv.transforms = tr
    sys.modules["torchvision"], sys.modules["torchvision.transforms"] = tv, tr
    return ["torchvision", "torchvision.transforms"]


def original_da3() -> types.ModuleType:
    """The original ``depth_anything_3`` package, imported once (skips the test without it)."""
    global _MODULE
    if _MODULE is not None:
        return _MODULE
    snap = snapshot()
    if snap is None:
        pytest.skip("the original Depth Anything 3 snapshot (upstream_da3.tar.gz) is not here")
    for dep in ("addict", "omegaconf", "einops", "huggingface_hub"):
        pytest.importorskip(dep, reason=f"the original Depth Anything 3 code needs {dep}")
    root = Path(tempfile.mkdtemp(prefix="depthcli-da3-original-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)  # imported modules stay loaded
    with tarfile.open(snap) as tf:
        tf.extractall(root, filter="data")
    sys.path.insert(0, str(root / "src"))
    export = types.ModuleType("depth_anything_3.utils.export")
    export.export = lambda *a, **k: None
    sys.modules["depth_anything_3.utils.export"] = export
    sys.meta_path.insert(0, _EmptyModules())
    shims = _torchvision_shim()
    import logging
    import warnings

    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            import depth_anything_3.api as api
            import depth_anything_3.utils.alignment as alignment
    finally:
        for name in shims:  # the original holds its references; the session must not see the fakes
            sys.modules.pop(name, None)
    logging.getLogger("dinov2").setLevel(logging.ERROR)
    with contextlib.suppress(Exception):
        from depth_anything_3.utils.logger import logger
        logger.setLevel(logging.ERROR) if hasattr(logger, "setLevel") else None
    _MODULE = types.SimpleNamespace(api=api, alignment=alignment, root=root)  # type: ignore[assignment]
    return _MODULE  # type: ignore[return-value]


def net_forward(net: torch.nn.Module, image_bchw: torch.Tensor) -> dict[str, torch.Tensor]:
    """``DepthAnything3Net.forward`` on single views, WITHOUT its sky fill: the raw ``depth`` and
    ``sky`` at the network resolution, (B, H, W) each."""
    captured: dict[str, torch.Tensor] = {}
    original = net._process_mono_sky_estimation

    def keep_raw(output):  # noqa: ANN001, ANN202
        captured.update({k: output[k].detach().clone() for k in ("depth", "sky") if k in output})
        return output

    net._process_mono_sky_estimation = keep_raw
    try:
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            net(image_bchw[:, None], None, None, [], False, False, "saddle_balanced")
    finally:
        del net._process_mono_sky_estimation
    assert original is not None
    return {k: v[:, 0] for k, v in captured.items()}


@torch.no_grad()
def randomize(module: torch.nn.Module, seed: int) -> None:
    """check_da3.py's perturbation: every parameter away from its initial value."""
    g = torch.Generator().manual_seed(seed + 1)

    def rn(p: torch.Tensor, std: float) -> torch.Tensor:
        return torch.randn(p.shape, generator=g, dtype=torch.float32) * std

    for name, p in module.named_parameters():
        if name.endswith(".gamma"):
            p.copy_(0.6 + rn(p, 0.4))
        elif name.endswith("pos_embed"):
            p.add_(rn(p, 0.6))
        elif name.endswith(("cls_token", "mask_token", "camera_token", "cam_token")):
            p.copy_(rn(p, 1.0))
        elif "norm" in name and name.endswith(".weight"):
            p.copy_(1.0 + rn(p, 0.3))
        elif "norm" in name and name.endswith(".bias"):
            p.copy_(rn(p, 0.1))
        elif name.endswith("attn.qkv.weight"):
            p.mul_(3.0)
        elif name.endswith(".bias") and float(p.abs().max()) == 0.0:
            p.copy_(rn(p, 0.05))
        elif ".head." in name and name.endswith(".weight") and p.dim() == 4:
            p.mul_(2.0)


@torch.no_grad()
def calibrate(net: torch.nn.Module, image_bchw: torch.Tensor) -> None:
    """Depth logits (exp activation) to about -0.7..1.6 on this input; sky logits so that about
    a quarter of the pixels are sky (> 0.3 after the ReLU)."""
    head = net.head

    def fit(conv: torch.nn.Conv2d, channel: int, lo_t: float, hi_t: float, q_lo: float, q_hi: float) -> None:
        cap: dict[str, torch.Tensor] = {}
        hook = conv.register_forward_hook(lambda m, i, o: cap.__setitem__("o", o.detach().clone()))
        with contextlib.redirect_stdout(io.StringIO()):
            net(image_bchw[:, None], None, None, [], False, False, "saddle_balanced")
        hook.remove()
        v = cap["o"][:, channel].flatten()
        lo, hi = torch.quantile(v, q_lo), torch.quantile(v, q_hi)
        s = (hi_t - lo_t) / float(hi - lo)
        conv.weight[channel].mul_(s)
        conv.bias[channel].copy_((conv.bias[channel] - lo) * s + lo_t)

    fit(head.scratch.output_conv2[-1], 0, -0.7, 1.6, 0.01, 0.99)
    if hasattr(head.scratch, "sky_output_conv2"):
        fit(head.scratch.sky_output_conv2[-1], 0, -1.0, 0.6, 0.05, 0.95)


def save_hub_folder(wrapper: torch.nn.Module, folder: Path, model_name: str) -> Path:
    """The published layout: config.json {"model_name": ...} + model.safetensors written as the
    Hub mixin writes it (``safetensors.torch.save_model``: tensors the network shares, once)."""
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    save_model(wrapper, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_name": model_name}))
    return folder


# ----------------------------------------------------------------------------------- tiny networks
def tiny_original(kind: str) -> torch.nn.Module:
    """A small ``DepthAnything3Net`` of the original's own modules (seconds to build and run):

    - ``alternating`` (DA3-SMALL/BASE's architecture): 64 wide, 6 blocks, 2 heads, alternating
      attention, QK-norm and RoPE from block 2, [local, global] taps 1 (before the schedule),
      3 (global), 4 (local) and 5 (global); DualDPT; a camera encoder and decoder, as the
      published checkpoints carry;
    - ``sky`` (DA3MONO/METRIC's): 64 wide, 4 blocks, plain DINOv2; DPT with its sky branch.
    """
    original_da3()
    from depth_anything_3.model.cam_dec import CameraDec
    from depth_anything_3.model.cam_enc import CameraEnc
    from depth_anything_3.model.da3 import DepthAnything3Net
    from depth_anything_3.model.dinov2.dinov2 import DinoV2
    from depth_anything_3.model.dinov2.vision_transformer import DinoVisionTransformer
    from depth_anything_3.model.dpt import DPT
    from depth_anything_3.model.dualdpt import DualDPT

    alternating = kind == "alternating"
    start = 2 if alternating else -1
    taps = TINY_TAPS[kind]
    with contextlib.redirect_stdout(io.StringIO()):
        backbone = DinoV2("vits", out_layers=list(taps), alt_start=start, qknorm_start=start, rope_start=start,
                          cat_token=alternating)
        backbone.pretrained = DinoVisionTransformer(
            img_size=518, patch_size=14, embed_dim=TINY_WIDTH, depth=TINY_DEPTH[kind], num_heads=TINY_HEADS,
            mlp_ratio=4, ffn_layer="mlp", alt_start=start, qknorm_start=start, rope_start=start,
            cat_token=alternating)
    if alternating:
        head = DualDPT(dim_in=2 * TINY_WIDTH, output_dim=2, features=TINY_FEATURES, out_channels=list(TINY_CHANNELS))
        return DepthAnything3Net(backbone, head, cam_dec=CameraDec(dim_in=2 * TINY_WIDTH),
                                 cam_enc=CameraEnc(dim_out=TINY_WIDTH, num_heads=TINY_HEADS, trunk_depth=1)).eval()
    head = DPT(dim_in=TINY_WIDTH, output_dim=1, features=TINY_FEATURES, out_channels=list(TINY_CHANNELS))
    return DepthAnything3Net(backbone, head).eval()


TINY_WIDTH, TINY_HEADS, TINY_FEATURES, TINY_CHANNELS = 64, 2, 32, (16, 32, 64, 64)
TINY_DEPTH = {"alternating": 6, "sky": 4}
TINY_TAPS = {"alternating": (1, 3, 4, 5), "sky": (0, 1, 2, 3)}


def tiny_config(kind: str, *, metric: bool = False):  # noqa: ANN201 - DA3Config
    """depthcli's config for ``tiny_original(kind)``: a preset with the sizes changed. ``metric``
    (``sky`` only): DA3METRIC's variant, the same network whose output is scaled to metres."""
    from depthcli.model.configs import EncoderConfig
    from depthcli.model.depth_anything_3.config import variant

    taps = TINY_TAPS[kind]
    encoder = EncoderConfig(f"tiny-{kind}", TINY_WIDTH, TINY_DEPTH[kind], TINY_HEADS, TINY_FEATURES,
                            TINY_CHANNELS, taps)
    if kind == "alternating":
        assert not metric, "the alternating presets (DA3-SMALL/BASE) are relative"
        return variant("da3-small", preset="tiny-alternating", encoder=encoder, taps=taps, alternate_from=2,
                       qk_norm_from=2, rope_from=2)
    if metric:
        return variant("da3metric-large", preset="tiny-sky-metric", encoder=encoder, taps=taps)
    return variant("da3mono-large", preset="tiny-sky", encoder=encoder, taps=taps)


def random_image(shape: tuple[int, int], seed: int, batch: int = 2, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A seeded (batch, 3, H, W) stand-in for a normalised image."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, *shape, generator=g) * 0.8).to(dtype)


def tiny_pair(kind: str, seed: int, calibration_bchw: torch.Tensor, *, metric: bool = False):  # noqa: ANN201
    """(the original's tiny network, depthcli's ``DepthAnything3`` with the same weights), seeded,
    perturbed and calibrated on ``calibration_bchw`` (depth logits in range, about a fifth to a
    quarter of it sky)."""
    from depthcli.model.depth_anything_3 import checkpoint as da3_checkpoint
    from depthcli.model.depth_anything_3.model import DepthAnything3

    torch.manual_seed(seed)
    net = tiny_original(kind)
    randomize(net, seed)
    calibrate(net, calibration_bchw)
    ours = DepthAnything3(tiny_config(kind, metric=metric)).eval()
    wrapper_state = {f"model.{k}": v for k, v in net.state_dict().items()}  # as DepthAnything3 holds it
    ours.load_state_dict(da3_checkpoint.to_depthcli_names(wrapper_state), strict=True)
    return net, ours


# ----------------------------------------------------------------------------------- real presets
class RealPresets:
    """The four presets at their published sizes, seeded and perturbed, built on first use and
    written as their Hub folders under ``root`` (the ViT-L file is 1.3 GB: prefer a memory-backed
    folder). DA3MONO-LARGE and DA3METRIC-LARGE have the same architecture: one network, one
    weight file (hard-linked into both folders)."""

    CALIBRATION_SHAPE = (28, 42)

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nets: dict[str, torch.nn.Module] = {}

    def get(self, preset: str) -> tuple[torch.nn.Module, Path]:
        """(the original's ``DepthAnything3Net``, its Hub folder)."""
        built = "da3mono-large" if preset in ("da3mono-large", "da3metric-large") else preset
        folder = self.root / preset
        if built not in self.nets:
            seed = sum(map(ord, built))
            torch.manual_seed(seed)
            wrapper = original_da3().api.DepthAnything3(model_name=built).eval()
            randomize(wrapper, seed)
            calibrate(wrapper.model, random_image(self.CALIBRATION_SHAPE, seed=1, batch=1))
            save_hub_folder(wrapper, self.root / built, built)
            self.nets[built] = wrapper.model
        if not folder.exists():  # the metric folder: same weights, its own config.json
            folder.mkdir()
            os.link(self.root / built / "model.safetensors", folder / "model.safetensors")
            (folder / "config.json").write_text(json.dumps({"model_name": preset}))
        return self.nets[built], folder


# ----------------------------------------------------------------------------------- the original pipeline
FOCAL_DIVISOR = 300.0  # DA3METRIC: metres = output * focal_px (at the network input) / 300
SKY_THRESHOLD = 0.3  # the original's compute_sky_mask: non-sky = score < 0.3


def network_input(photo_bgr: np.ndarray, size: int) -> torch.Tensor:
    """The original's ``InputProcessor(process_res=size, "upper_bound_resize")`` of one photo (read
    as OpenCV reads it, BGR): (1, 3, H, W) float32."""
    original_da3()
    from depth_anything_3.utils.io.input_processor import InputProcessor

    rgb = cv2.cvtColor(photo_bgr, cv2.COLOR_BGR2RGB)
    with contextlib.redirect_stdout(io.StringIO()):
        images, _, _ = InputProcessor()([rgb], None, None, size, "upper_bound_resize", num_workers=1)
    return images.float()


@dataclass
class Reference:
    depth_hw: np.ndarray  # float32 at the photo's size: what depthcli's npy must equal
    network_hw: tuple[int, int]
    sky_pixels: int | None  # sky at the network resolution (None: no sky head)

    @property
    def sky_filled(self) -> bool:
        """Whether the original's sky fill changed this photo's depth (more than 10 pixels of
        sky and of ground)."""
        n = self.network_hw[0] * self.network_hw[1]
        return self.sky_pixels is not None and self.sky_pixels > 10 and n - self.sky_pixels > 10


@torch.no_grad()
def original_pipeline(net: torch.nn.Module, photo_bgr: np.ndarray, size: int,
                      focal_px: float | None = None) -> Reference:
    """check_da3.py's reference for one photo: InputProcessor -> ``DepthAnything3Net`` forward
    (single view, float32, its sky fill included) -> for a metric model (``focal_px``: the
    photo's focal length in pixels) ``* f_net / 300`` with ``f_net = focal_px * w_net / w`` ->
    bilinear, ``align_corners=True``, to the photo's size."""
    x = network_input(photo_bgr, size)
    with contextlib.redirect_stdout(io.StringIO()):
        out = net(x[None], None, None, [], False, False, "saddle_balanced")
    depth = out["depth"][0, 0].float()
    h, w = photo_bgr.shape[:2]
    if focal_px is not None:
        depth = depth * (focal_px * depth.shape[1] / w) / FOCAL_DIVISOR
    up = F.interpolate(depth[None, None], size=(h, w), mode="bilinear", align_corners=True)[0, 0]
    sky = int((~(out["sky"][0, 0] < SKY_THRESHOLD)).sum()) if "sky" in out else None
    return Reference(up.numpy(), tuple(depth.shape), sky)
