"""Model sizes as data: one registry of encoder shapes, one config for a whole depth model.

The widths, depths and feature taps are those of the published Depth-Anything checkpoints
(V1: LiheYoung/Depth-Anything, V2: DepthAnything/Depth-Anything-V2).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

PATCH_SIZE = 14
NATIVE_GRID = 37  # the position encoding is learned for 518 / 14 = 37 patches a side
METRIC_MAX_DEPTH = {"hypersim": 20.0, "vkitti": 80.0}  # metres: indoor, outdoor


@dataclass(frozen=True)
class EncoderConfig:
    """A DINOv2 ViT with its DPT head widths, as shipped with Depth-Anything."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    features: int  # DPT fusion width
    out_channels: tuple[int, int, int, int]  # reassemble widths, finest to coarsest
    v2_taps: tuple[int, int, int, int]  # blocks V2 reads; V1 reads the last four
    mlp_ratio: float = 4.0


ENCODERS: dict[str, EncoderConfig] = {
    "vits": EncoderConfig("vits", 384, 12, 6, 64, (48, 96, 192, 384), (2, 5, 8, 11)),
    "vitb": EncoderConfig("vitb", 768, 12, 12, 128, (96, 192, 384, 768), (2, 5, 8, 11)),
    "vitl": EncoderConfig("vitl", 1024, 24, 16, 256, (256, 512, 1024, 1024), (4, 11, 17, 23)),
}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a Depth-Anything network before its weights are loaded."""

    encoder: EncoderConfig
    version: int = 2  # 1 or 2: which blocks feed the head (and how the image pipeline upsamples)
    max_depth: float | None = None  # set for V2 metric checkpoints: sigmoid x max_depth metres
    taps: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.version not in (1, 2):
            raise ValueError(f"version must be 1 or 2, not {self.version!r}")
        if not self.taps:
            d = self.encoder.depth
            taps = tuple(range(d - 4, d)) if self.version == 1 else self.encoder.v2_taps
            object.__setattr__(self, "taps", taps)
        if len(self.taps) != 4 or not all(0 <= t < self.encoder.depth for t in self.taps):
            raise ValueError(f"need four block indices below {self.encoder.depth}, got {self.taps}")

    @property
    def metric(self) -> bool:
        return self.max_depth is not None

    def with_version(self, version: int) -> ModelConfig:
        """The same network read with the other version's feature taps."""
        return replace(self, version=version, taps=())


def encoder_for_shapes(embed_dim: int, depth: int, num_heads: int | None = None, *,
                       out_channels: tuple[int, int, int, int], features: int) -> EncoderConfig:
    """The registry entry matching the tensor shapes, or an ad-hoc one (small test models).

    Head count cannot be read from tensor shapes: the registry fixes it for known sizes and
    other widths assume the DINOv2 head width of 64 unless told.
    """
    for enc in ENCODERS.values():
        if (enc.embed_dim, enc.depth, enc.features, enc.out_channels) == (embed_dim, depth, features,
                                                                         out_channels):
            if num_heads in (None, enc.num_heads):
                return enc
    heads = num_heads or max(1, embed_dim // 64)
    if embed_dim % heads:
        raise ValueError(f"embedding width {embed_dim} is not divisible by {heads} heads")
    # V2 taps for unknown depths: the published pattern of evenly spaced blocks ending at the last
    step = depth // 4
    taps = tuple(depth - 1 - step * (3 - i) for i in range(4)) if depth >= 4 else (0, 0, 0, 0)
    return EncoderConfig(f"vit-{embed_dim}x{depth}", embed_dim, depth, heads, features, out_channels,
                         taps)  # type: ignore[arg-type]
