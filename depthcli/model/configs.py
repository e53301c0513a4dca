"""Model sizes and families as data (no torch here: the runtime reads them on its torch-free path).

- ``EncoderConfig`` / ``ENCODERS``: the DINOv2 sizes with the DPT head widths they ship with;
- ``Traits``: what the runtime needs to know about ANY family's network (its preprocessing, what
  its output means, how it goes back to the image's size), so no door or runtime code ever tests
  a model's name: it asks the config's ``traits``;
- ``ModelConfig``: one Depth Anything V1/V2 network. Other families keep their config in their
  own package (``depth_anything_3/config.py``, ...), each with the same ``family`` / ``traits`` /
  ``encoder`` / ``metric`` / ``max_depth`` / ``to_dict`` members.

The widths, depths and feature taps are those of the published Depth-Anything checkpoints
(V1: LiheYoung/Depth-Anything, V2: DepthAnything/Depth-Anything-V2).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

PATCH_SIZE = 14
NATIVE_GRID = 37  # the position encoding is learned for 518 / 14 = 37 patches a side
METRIC_MAX_DEPTH = {"hypersim": 20.0, "vkitti": 80.0}  # metres: indoor, outdoor

# What a network's output means (``Traits.kind``), as the metadata and messages say it.
INVERSE_DEPTH = "relative inverse depth"  # larger = nearer, affine-invariant (V1/V2, VDA)
RELATIVE_DEPTH = "relative depth"  # larger = farther, up to an unknown scale (DA3 relative models)
METRIC_DEPTH = "metric depth, metres"


@dataclass(frozen=True)
class Traits:
    """How the runtime treats one family's network: plain data, JSON-able (the OpenVINO cache
    stores it, so a cached model runs without importing torch or reading the checkpoint).

    - ``resize``: ``lower_bound`` (V1/V2/VDA: the shorter side to ``--size``, both sides rounded
      to multiples of 14, never below it) or ``upper_bound`` (DA3: the longer side to
      ``--size``, each side then rounded to the nearest multiple of 14);
    - ``unit_dtype``: the dtype of the image's ``/ 255`` before the resize (the V1/V2 scripts
      divide in float64, VDA's in float32: the cubic resize then rounds differently);
    - ``align_corners``: of the final bilinear upsample to the image (V1 False, the rest True);
    - ``outputs``: the network's outputs in order, ``depth`` first (DA3 mono/metric add ``sky``);
    - ``focal_divisor``: metric depth that depends on the camera (DA3METRIC): metres = output *
      focal_px / focal_divisor, focal_px at the network input;
    - ``temporal``: a clip model (VDA) that sees frames in windows, not one at a time;
    - ``wide_ratio``: VDA: clips wider than this ratio get the original's smaller size (its
      ``network_size_rule``: the size shrinks with the aspect ratio, to bound the window's memory).
    """

    family: str
    kind: str
    resize: str = "lower_bound"
    default_size: int = 518
    unit_dtype: str = "float64"
    align_corners: bool = True
    outputs: tuple[str, ...] = ("depth",)
    focal_divisor: float | None = None
    temporal: bool = False
    max_depth: float | None = None  # the fixed range of a metric model's output, for messages
    wide_ratio: float | None = None  # VDA: clips wider than this ratio get the original's smaller size

    @property
    def metric(self) -> bool:
        return self.kind == METRIC_DEPTH

    @property
    def sky(self) -> bool:
        return "sky" in self.outputs

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["outputs"] = list(self.outputs)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Traits:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        values["outputs"] = tuple(values.get("outputs", ("depth",)))
        return cls(**values)


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

    family = "depth_anything"

    @property
    def metric(self) -> bool:
        return self.max_depth is not None

    @property
    def traits(self) -> Traits:
        return Traits(family=self.family, kind=METRIC_DEPTH if self.metric else INVERSE_DEPTH,
                      align_corners=self.version == 2, max_depth=self.max_depth)

    @property
    def describe(self) -> str:
        """``Depth-Anything V2 vits, metric 0-20 m``: what messages call this network."""
        kind = f"metric 0-{self.max_depth:g} m" if self.metric else "relative"
        return f"Depth-Anything V{self.version} {self.encoder.name}, {kind}"

    def to_dict(self) -> dict[str, Any]:
        """Everything that decides the network, as JSON data (the converted-model cache key)."""
        return {"family": self.family, "encoder": encoder_to_dict(self.encoder), "version": self.version,
                "max_depth": self.max_depth, "taps": list(self.taps)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return cls(encoder_from_dict(d["encoder"]), version=int(d["version"]), max_depth=d.get("max_depth"),
                   taps=tuple(int(t) for t in d.get("taps", ())))

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


def encoder_to_dict(enc: EncoderConfig) -> dict[str, Any]:
    d = asdict(enc)
    d["out_channels"], d["v2_taps"] = list(enc.out_channels), list(enc.v2_taps)
    return d


def encoder_from_dict(d: dict[str, Any]) -> EncoderConfig:
    return EncoderConfig(d["name"], int(d["embed_dim"]), int(d["depth"]), int(d["num_heads"]), int(d["features"]),
                         tuple(int(c) for c in d["out_channels"]),  # type: ignore[arg-type]
                         tuple(int(t) for t in d["v2_taps"]), float(d.get("mlp_ratio", 4.0)))  # type: ignore[arg-type]


WIDE_SCALE = 1.777  # Video Depth Anything's size rule for clips wider than ``Traits.wide_ratio``


def wide_ratio_size(h: int, w: int, size: int, wide_ratio: float | None) -> int:
    """The network size for an h x w clip under ``Traits.wide_ratio`` (Video Depth Anything).

    Up to ``wide_ratio`` it is ``size`` itself; beyond, ``size * 1.777 / ratio`` truncated, then
    rounded (Python's round-half-even, as the original) to a multiple of 14. The lower-bound
    resize then applies to the result as usual.
    """
    ratio = max(h, w) / min(h, w)
    if wide_ratio is None or ratio <= wide_ratio:
        return size
    return round(int(size * WIDE_SCALE / ratio) / PATCH_SIZE) * PATCH_SIZE
