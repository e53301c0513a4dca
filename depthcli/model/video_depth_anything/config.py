"""Video Depth Anything as data (no torch: the runtime reads it on its torch-free path).

A VDA network is fixed by its DINOv2 size (the same ``EncoderConfig`` as Depth Anything V2, with
V2's feature taps), whether it is a metric model, and the length of the motion modules' frame
position table (32 in every published checkpoint: a window can hold at most that many frames).

Metric models are the same network with other weights: still ReLU at the end (no sigmoid x
max_depth as in V2 metric), and their windows are not aligned to each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..configs import (
    INVERSE_DEPTH,
    METRIC_DEPTH,
    EncoderConfig,
    Traits,
    encoder_from_dict,
    encoder_to_dict,
    wide_ratio_size,
)

FAMILY = "video_depth_anything"
MAX_FRAMES = 32  # the published motion modules' frame position table (``temporal_max_len``)
WIDE_RATIO = 1.78  # the original shrinks the network size for clips wider than 16:9, to bound a window's memory


def network_size_rule(h: int, w: int, size: int, wide_ratio: float | None = WIDE_RATIO) -> int:
    """The ``--size`` the original actually uses for an h x w clip (``configs.wide_ratio_size``)."""
    return wide_ratio_size(h, w, size, wide_ratio)


@dataclass(frozen=True)
class VDAConfig:
    """Everything needed to build a Video Depth Anything network before its weights are loaded.

    The same public members as ``configs.ModelConfig`` (``family``, ``encoder``, ``metric``,
    ``max_depth``, ``traits``, ``describe``, ``to_dict``/``from_dict``), so the runtime treats
    both alike.
    """

    encoder: EncoderConfig
    metric: bool = False
    taps: tuple[int, ...] = ()  # blocks the head reads; V2's by default
    max_frames: int = MAX_FRAMES

    family = FAMILY
    max_depth = None  # metric VDA outputs metres without a fixed range

    def __post_init__(self) -> None:
        if not self.taps:
            object.__setattr__(self, "taps", tuple(self.encoder.v2_taps))
        if len(self.taps) != 4 or not all(0 <= t < self.encoder.depth for t in self.taps):
            raise ValueError(f"need four block indices below {self.encoder.depth}, got {self.taps}")
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be positive, got {self.max_frames}")

    @property
    def traits(self) -> Traits:
        # float32 ``/ 255`` before the cubic resize (V1/V2 divide in float64: other rounding)
        return Traits(family=self.family, kind=METRIC_DEPTH if self.metric else INVERSE_DEPTH,
                      resize="lower_bound", default_size=518, unit_dtype="float32", align_corners=True,
                      temporal=True, wide_ratio=WIDE_RATIO)

    @property
    def describe(self) -> str:
        """``Video Depth Anything vits, relative``: what messages call this network."""
        return f"Video Depth Anything {self.encoder.name}, {'metric' if self.metric else 'relative'}"

    def to_dict(self) -> dict[str, Any]:
        """Everything that decides the network, as JSON data (the converted-model cache key)."""
        return {"family": self.family, "encoder": encoder_to_dict(self.encoder), "metric": self.metric,
                "taps": list(self.taps), "max_frames": self.max_frames}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VDAConfig:
        if d.get("family", FAMILY) != FAMILY:
            raise ValueError(f"not a {FAMILY} config: family {d.get('family')!r}")
        return cls(encoder_from_dict(d["encoder"]), metric=bool(d.get("metric", False)),
                   taps=tuple(int(t) for t in d.get("taps", ())), max_frames=int(d.get("max_frames", MAX_FRAMES)))
