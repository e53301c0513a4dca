"""Depth Anything 3 networks as data (no torch here: the runtime reads them on its torch-free path).

The four Apache-2.0 presets of ByteDance-Seed/Depth-Anything-3 that estimate depth from one image:

- ``da3-small`` / ``da3-base``: DINOv2 ViT-S/B with, from block 4 on, alternating local/global
  attention, QK-norm and 2D RoPE; a camera token replaces the class token at block 4; the head
  sees ``[local, global]`` features (twice the width) through the DualDPT head, of which depth
  uses the main branch (its second channel is a confidence, its auxiliary branch rays);
- ``da3mono-large`` / ``da3metric-large``: plain DINOv2 ViT-L (taps 4, 11, 17, 23) and a DPT head
  with a sky branch. Same tensors; DA3METRIC's depth is metric once multiplied by the focal
  length in pixels at the network input over 300.

Every network outputs depth through ``exp`` (larger = farther). ``DA3Config`` has the members the
runtime asks every family for (``family``, ``encoder``, ``metric``, ``max_depth``, ``traits``,
``describe``, ``to_dict`` / ``from_dict``), plus the architecture options.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ..configs import (
    ENCODERS,
    METRIC_DEPTH,
    RELATIVE_DEPTH,
    EncoderConfig,
    Traits,
    encoder_from_dict,
    encoder_to_dict,
)

FAMILY = "depth_anything_3"
DUALDPT, DPT = "dualdpt", "dpt"
HEADS = (DUALDPT, DPT)
DEFAULT_SIZE = 504  # the original's default process_res (longer side)
FOCAL_DIVISOR = 300.0  # DA3METRIC: metres = output * focal_px / 300


@dataclass(frozen=True)
class DA3Config:
    """Everything needed to build a Depth Anything 3 network before its weights are loaded.

    ``-1``-free: a start index of ``None`` means the option is off (the original writes -1).
    """

    preset: str  # "da3-small", ... (test variants carry their own name)
    encoder: EncoderConfig  # ViT size and DPT widths (``v2_taps`` is not used: see ``taps``)
    taps: tuple[int, int, int, int]  # the blocks the head reads (the original's out_layers)
    head: str = DUALDPT  # "dualdpt" (small/base) or "dpt" (mono/metric)
    head_channels: int = 2  # channels of the head's last convolution: depth (+ confidence)
    sky: bool = False  # a sky branch (DPT head)
    metric: bool = False
    alternate_from: int | None = None  # alt_start: alternating local/global attention, camera token
    qk_norm_from: int | None = None  # qknorm_start
    rope_from: int | None = None  # rope_start
    cat_local: bool = False  # cat_token: the head reads [local, global] features
    family: ClassVar[str] = FAMILY

    def __post_init__(self) -> None:
        depth = self.encoder.depth
        if len(self.taps) != 4 or not all(0 <= t < depth for t in self.taps):
            raise ValueError(f"need four block indices below {depth}, got {self.taps}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, not {self.head!r}")
        if self.sky and self.head != DPT:
            raise ValueError("only the DPT head has a sky branch")
        if self.head_channels < 1:
            raise ValueError(f"head_channels must be positive, not {self.head_channels}")
        for name in ("alternate_from", "qk_norm_from", "rope_from"):
            start = getattr(self, name)
            if start is not None and not 0 <= start < depth:
                raise ValueError(f"{name} must be a block index below {depth} or None, not {start}")
        if self.cat_local and self.alternate_from is None:
            raise ValueError("cat_local needs alternating attention (alternate_from)")

    @property
    def max_depth(self) -> None:
        """No fixed range: DA3METRIC's metres scale with the focal length."""
        return None

    @property
    def head_in_dim(self) -> int:
        """Width of the tokens the head reads."""
        return self.encoder.embed_dim * (2 if self.cat_local else 1)

    @property
    def traits(self) -> Traits:
        return Traits(family=FAMILY, kind=METRIC_DEPTH if self.metric else RELATIVE_DEPTH, resize="upper_bound",
                      default_size=DEFAULT_SIZE, unit_dtype="uint8", align_corners=True,
                      outputs=("depth", "sky") if self.sky else ("depth",),
                      focal_divisor=FOCAL_DIVISOR if self.metric else None)

    @property
    def describe(self) -> str:
        """``Depth Anything 3 DA3-SMALL, relative depth``: what messages call this network."""
        kind = "metric depth" if self.metric else "relative depth"
        return f"Depth Anything 3 {self.preset.upper()}, {kind}"

    def to_dict(self) -> dict[str, Any]:
        """Everything that decides the network, as JSON data (the converted-model cache key)."""
        return {"family": FAMILY, "preset": self.preset, "encoder": encoder_to_dict(self.encoder),
                "taps": list(self.taps), "head": self.head, "head_channels": self.head_channels, "sky": self.sky,
                "metric": self.metric, "alternate_from": self.alternate_from, "qk_norm_from": self.qk_norm_from,
                "rope_from": self.rope_from, "cat_local": self.cat_local}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DA3Config:
        if d.get("family", FAMILY) != FAMILY:
            raise ValueError(f"not a {FAMILY} config: family {d.get('family')!r}")

        def start(key: str) -> int | None:
            return None if d.get(key) is None else int(d[key])

        return cls(str(d["preset"]), encoder_from_dict(d["encoder"]),
                   tuple(int(t) for t in d["taps"]),  # type: ignore[arg-type]
                   head=str(d.get("head", DUALDPT)), head_channels=int(d.get("head_channels", 2)),
                   sky=bool(d.get("sky", False)), metric=bool(d.get("metric", False)),
                   alternate_from=start("alternate_from"), qk_norm_from=start("qk_norm_from"),
                   rope_from=start("rope_from"), cat_local=bool(d.get("cat_local", False)))


def _alternating(name: str, encoder: EncoderConfig) -> DA3Config:
    return DA3Config(name, encoder, (5, 7, 9, 11), head=DUALDPT, head_channels=2, alternate_from=4,
                     qk_norm_from=4, rope_from=4, cat_local=True)


def _large_with_sky(name: str, *, metric: bool) -> DA3Config:
    return DA3Config(name, ENCODERS["vitl"], (4, 11, 17, 23), head=DPT, head_channels=1, sky=True, metric=metric)


PRESETS: dict[str, DA3Config] = {
    "da3-small": _alternating("da3-small", ENCODERS["vits"]),
    "da3-base": _alternating("da3-base", ENCODERS["vitb"]),
    "da3mono-large": _large_with_sky("da3mono-large", metric=False),
    "da3metric-large": _large_with_sky("da3metric-large", metric=True),
}


def variant(base: str, **changes: Any) -> DA3Config:  # noqa: ANN401
    """A preset with some fields changed (small test networks: fewer blocks, narrower)."""
    return replace(PRESETS[base], **changes)
