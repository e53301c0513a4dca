"""Video Depth Anything checkpoints: recognise them and read them into depthcli names.

Two layouts:
- original (``video_depth_anything_vits.pth``, ``metric_video_depth_anything_vitl.pth``, ...):
  ``pretrained.*`` (DINOv2, as in V1/V2) and ``head.*``, which is V2's ``depth_head.*`` plus
  ``head.motion_modules.*``;
- depthcli (``save_safetensors``): ``encoder.*`` and ``head.{reassemble,fusion,motion,output}.*``,
  with the config as JSON in the metadata.

They are told from V1/V2 by their keys (a ``head.`` prefix other than V2's ``head.conv*``, the
motion modules), never by the file name, so a V2 file keeps reading as V2 whatever its name.
Metric-ness comes from the metadata or the file name (``metric_...``), as it cannot be read from
tensors: both kinds end in ReLU.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable

import torch

from .. import checkpoint_keys as keys
from ..configs import encoder_for_shapes
from ..errors import CheckpointError
from .config import FAMILY, MAX_FRAMES, VDAConfig

MAX_KEYS_SHOWN = 4
MOTION = "head.motion."  # depthcli names of the motion modules (the original's: head.motion_modules.)


def _compile(pairs: list[tuple[str, str]]) -> list[keys.Rule]:
    return [(re.compile(p + r"\Z"), lambda m, t=t: m.expand(t)) for p, t in pairs]


_MM = r"head\.motion_modules\.(\d+)\.temporal_transformer\."
_BLOCK = _MM + r"transformer_blocks\.(\d+)\."
MOTION_RULES = _compile([
    (_MM + r"(norm|proj_in|proj_out)\.(weight|bias)", r"head.motion.\1.\2.\3"),
    (_BLOCK + r"attention_blocks\.(\d+)\.to_([qkv])\.weight", r"head.motion.\1.blocks.\2.attns.\3.\4.weight"),
    (_BLOCK + r"attention_blocks\.(\d+)\.to_out\.0\.(weight|bias)", r"head.motion.\1.blocks.\2.attns.\3.proj.\4"),
    (_BLOCK + r"attention_blocks\.(\d+)\.pos_encoder\.pe", r"head.motion.\1.blocks.\2.attns.\3.frame_positions"),
    (_BLOCK + r"norms\.(\d+)\.(weight|bias)", r"head.motion.\1.blocks.\2.attn_norms.\3.\4"),
    (_BLOCK + r"ff\.net\.0\.proj\.(weight|bias)", r"head.motion.\1.blocks.\2.ff.proj.\3"),
    (_BLOCK + r"ff\.net\.2\.(weight|bias)", r"head.motion.\1.blocks.\2.ff.out.\3"),
    (_BLOCK + r"ff_norm\.(weight|bias)", r"head.motion.\1.blocks.\2.ff_norm.\3"),
])


def _under_temporal_head(name: str) -> str:
    """A V2 DPT name (``reassemble.*``, ``fusion.*``, ``head.convN.*``) as the temporal head's."""
    return "head.output." + name[len("head."):] if name.startswith("head.") else "head." + name


def recognise(state_keys: Iterable[str], name: str = "") -> bool:
    """Whether a state dict is a Video Depth Anything network: motion modules in either layout,
    or the original layout's ``pretrained.`` + ``head.projects.`` (V2 says ``depth_head.``) even
    without them, so that such a file is refused as VDA without temporal weights rather than
    misread. ``name`` is not needed: keys alone tell VDA from V1/V2 (a depthcli file that lost
    its motion modules is still told by its metadata, in ``checkpoints.read_checkpoint``)."""
    names = list(state_keys)
    if any(k.startswith(("head.motion_modules.", MOTION)) for k in names):
        return True
    return any(k.startswith("pretrained.") for k in names) and any(k.startswith("head.projects.") for k in names)


def metric_from_name(name: str) -> bool:
    return "metric" in name.lower()


def read(state: dict[str, torch.Tensor], name: str, source: str, meta: dict | None = None
         ) -> tuple[VDAConfig, dict[str, torch.Tensor]]:
    """(config, state in depthcli names) for a recognised checkpoint. ``meta``: depthcli's own
    safetensors metadata, whose ``config`` wins over shapes and the name."""
    meta = meta or {}
    if any(k.startswith("pretrained.") for k in state):
        state = _rename_original(state, source)
    config = _config(state, name, source, meta)
    _check_temporal(state, config, source)
    return config, state


def _rename_original(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The shared parts go through the V1/V2 rules (VDA's ``head.`` is V2's ``depth_head.``),
    the motion modules through ``MOTION_RULES``."""
    def as_v2(key: str) -> str:
        return "depth_" + key if key.startswith("head.") and not key.startswith("head.motion_modules.") else key

    renamed, unknown = keys.rename({as_v2(k): v for k, v in state.items()}, [*keys.ORIGINAL_RULES, *MOTION_RULES],
                                   keys.ORIGINAL_UNUSED)
    if unknown:
        unknown = [k.removeprefix("depth_") for k in unknown]
        more = f" (+{len(unknown) - MAX_KEYS_SHOWN} more)" if len(unknown) > MAX_KEYS_SHOWN else ""
        raise CheckpointError(f"{source}: unexpected keys for a Video Depth Anything checkpoint: "
                              + ", ".join(unknown[:MAX_KEYS_SHOWN]) + more)
    return {(k if k.startswith(("encoder.", MOTION)) else _under_temporal_head(k)): v for k, v in renamed.items()}


def _shape(state: dict[str, torch.Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"{source}: missing key {key}")
    return tuple(state[key].shape)


def _config(state: dict[str, torch.Tensor], name: str, source: str, meta: dict) -> VDAConfig:
    try:
        if meta.get("config"):
            return VDAConfig.from_dict(json.loads(meta["config"]))
        embed_dim = _shape(state, "encoder.cls_token", source)[-1]
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.blocks\.(\d+)\.", k))}
        if not blocks:
            raise CheckpointError(f"{source}: no transformer blocks found")
        out_channels = tuple(_shape(state, f"head.reassemble.projections.{i}.weight", source)[0] for i in range(4))
        features = _shape(state, "head.reassemble.to_features.0.weight", source)[0]
        enc = encoder_for_shapes(embed_dim, max(blocks) + 1, out_channels=out_channels,  # type: ignore[arg-type]
                                 features=features)
        table = state.get("head.motion.0.blocks.0.attns.0.frame_positions")
        max_frames = table.shape[1] if table is not None and table.dim() == 3 else MAX_FRAMES
        return VDAConfig(enc, metric=metric_from_name(name), max_frames=max_frames)
    except CheckpointError:
        raise
    except (ValueError, KeyError, TypeError) as e:  # metadata that does not make a config
        raise CheckpointError(f"{source}: unusable Video Depth Anything config ({e})") from e


def _check_temporal(state: dict[str, torch.Tensor], config: VDAConfig, source: str) -> None:
    """A VDA file without (all) its motion modules is a broken file, said in one line here
    rather than as a list of missing keys by the strict load."""
    from .model import VideoDepthAnything

    with torch.device("meta"):
        expected = [k for k in VideoDepthAnything(config).state_dict() if k.startswith(MOTION)]
    missing = [k for k in expected if k not in state]
    if missing:
        what = "none of its" if len(missing) == len(expected) else f"{len(missing)} of its {len(expected)}"
        raise CheckpointError(f"{source}: a Video Depth Anything checkpoint with {what} temporal (motion module) "
                              f"weights (first missing: {missing[0]})")


def save_metadata(config: VDAConfig) -> dict[str, str]:
    """What ``save_safetensors`` stores besides ``format``: the family and the whole config."""
    return {"depthcli.family": FAMILY, "depthcli.encoder": config.encoder.name,
            "depthcli.config": json.dumps(config.to_dict(), sort_keys=True)}

