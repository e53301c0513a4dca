"""Recognising and reading the published Depth Anything 3 layout.

On disk (Hugging Face repos ``depth-anything/DA3-SMALL``, ...): a folder with ``config.json``
(``{"model_name": "da3-small", ...}``) and ``model.safetensors``, the state dict of the
original's ``DepthAnything3`` wrapper (keys ``model.backbone.pretrained.*``, ``model.head.*``,
``model.cam_enc.*``, ``model.cam_dec.*``); or that ``.safetensors`` file alone.

Which preset: ``config.json``'s ``model_name`` when there is one, else the tensors (embedding
width, block count, camera token, head kind, sky branch). DA3MONO-LARGE and DA3METRIC-LARGE have
the same tensors; without a config.json, the file or folder name has to say ``mono`` or
``metric`` (as the published repo names do).

Shared tensors: the Hub mixin saves with ``safetensors.torch.save_model``, which stores a tensor
the network holds under several names once and lists the dropped names in the file's metadata
(``checkpoints.py`` puts them back from there). In these presets the only one is the LayerNorm
that DualDPT's four auxiliary output levels share (``output_conv2_aux.{0..3}.2``), kept as level
0; ``restore_shared`` also puts it back for files that lost the metadata.

Accepted but not used by single-image depth (checked by name, then dropped): the camera
encoder and decoder (``cam_enc`` / ``cam_dec``: camera conditioning and pose) and DualDPT's
auxiliary ray branch. Any other key is refused.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import torch

from ..checkpoint_keys import _rules, rename
from ..errors import CheckpointError
from .config import DPT, DUALDPT, PRESETS, DA3Config

PREFIX = "model."
MAX_KEYS_SHOWN = 4
_BLOCKS = r"model\.backbone\.pretrained\.blocks\.(\d+)\."
_ENC = r"model\.backbone\.pretrained\."
_SCRATCH = r"model\.head\.scratch\."


def _fusion_index(m: re.Match[str]) -> str:
    return str(int(m.group(1)) - 1)


RULES = _rules([
    (_ENC + r"cls_token", "encoder.cls_token"),
    (_ENC + r"camera_token", "encoder.camera_token"),
    (_ENC + r"pos_embed", "encoder.position_encoding.table"),
    (_ENC + r"patch_embed\.proj\.(weight|bias)", r"encoder.patch_embed.proj.\1"),
    (_BLOCKS + r"(norm[12]\.(?:weight|bias)|attn\.(?:qkv|proj|q_norm|k_norm)\.(?:weight|bias)"
     r"|ls[12]\.gamma|mlp\.fc[12]\.(?:weight|bias))", r"encoder.blocks.\1.\2"),
    (_ENC + r"norm\.(weight|bias)", r"encoder.norm.\1"),
    (r"model\.head\.norm\.(weight|bias)", r"reassemble.token_norm.\1"),
    (r"model\.head\.projects\.(\d)\.(weight|bias)", r"reassemble.projections.\1.\2"),
    (r"model\.head\.resize_layers\.(\d)\.(weight|bias)", r"reassemble.resamplers.\1.\2"),
    (_SCRATCH + r"layer(\d)_rn\.weight", lambda m: f"reassemble.to_features.{int(m.group(1)) - 1}.weight"),
    (_SCRATCH + r"refinenet(\d)\.resConfUnit1\.(conv[12]\.(?:weight|bias))",
     lambda m: f"fusion.blocks.{_fusion_index(m)}.skip_unit.{m.group(2)}"),
    (_SCRATCH + r"refinenet(\d)\.resConfUnit2\.(conv[12]\.(?:weight|bias))",
     lambda m: f"fusion.blocks.{_fusion_index(m)}.refine_unit.{m.group(2)}"),
    (_SCRATCH + r"refinenet(\d)\.out_conv\.(weight|bias)",
     lambda m: f"fusion.blocks.{_fusion_index(m)}.out_conv.{m.group(2)}"),
    (_SCRATCH + r"output_conv1\.(weight|bias)", r"head.conv1.\1"),
    (_SCRATCH + r"output_conv2\.0\.(weight|bias)", r"head.depth.conv1.\1"),
    (_SCRATCH + r"output_conv2\.2\.(weight|bias)", r"head.depth.conv2.\1"),
    (_SCRATCH + r"sky_output_conv2\.0\.(weight|bias)", r"head.sky.conv1.\1"),
    (_SCRATCH + r"sky_output_conv2\.2\.(weight|bias)", r"head.sky.conv2.\1"),
])
# In the checkpoints, never used for depth from one image without a camera.
UNUSED_BY_DEPTH = re.compile(r"model\.cam_(?:enc|dec)\..+"
                             r"|model\.head\.scratch\.(?:refinenet[1-4]_aux|output_conv[12]_aux)\..+")
# Names of one tensor the original's modules share; the first is the one save_model keeps.
SHARED = [[f"model.head.scratch.output_conv2_aux.{level}.2.{kind}" for level in range(4)]
          for kind in ("weight", "bias")]


def recognise(state_keys: Iterable[str], config_json: dict | None) -> bool:
    """Whether a checkpoint is in the Depth Anything 3 layout: its config.json names a DA3 model
    (even one depthcli does not support: ``read`` says so), or its keys are the wrapper's."""
    name = (config_json or {}).get("model_name")
    if isinstance(name, str) and name.lower().startswith("da3"):
        return True
    return any(k.startswith(PREFIX + "backbone.pretrained.") for k in state_keys)


def restore_shared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The names save_model dropped for a shared tensor, back (the same tensor), when one of
    the group is present."""
    out = dict(state)
    for names in SHARED:
        present = next((out[n] for n in names if n in out), None)
        if present is not None:
            for n in names:
                out.setdefault(n, present)
    return out


def read(state: dict[str, torch.Tensor], config_json: dict | None, source: str
         ) -> tuple[DA3Config, dict[str, torch.Tensor]]:
    """(the preset's config, the used tensors under depthcli's names) for a DA3 checkpoint.

    ``source`` is the file or folder it came from: messages name it, and its name tells
    DA3MONO from DA3METRIC when no config.json does. Raises ``CheckpointError`` (one line) for
    a config naming an unknown preset, tensors that fit no preset (or not the named one), and
    keys the layout does not have.
    """
    label = Path(source).name or source
    state = restore_shared(state)
    name = (config_json or {}).get("model_name")
    if name is not None:
        if not isinstance(name, str) or name.lower() not in PRESETS:
            raise CheckpointError(f"{label}: config.json names model {name!r}, not a supported Depth Anything 3 "
                                  f"preset ({', '.join(PRESETS)})")
        config = PRESETS[name.lower()]
        mismatch = _mismatch(config, _signature(state, label))
        if mismatch:
            raise CheckpointError(f"{label}: tensors do not fit {config.preset} ({mismatch})")
    else:
        config = _preset_from_tensors(state, label, source)
    return config, to_depthcli_names(state, label)


def to_depthcli_names(state: dict[str, torch.Tensor], label: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensors depth uses, under depthcli's names; the unused ones dropped; any key the
    layout does not have refused (``CheckpointError`` naming the first few)."""
    renamed, unknown = rename(state, RULES, UNUSED_BY_DEPTH)
    if unknown:
        more = f" (+{len(unknown) - MAX_KEYS_SHOWN} more)" if len(unknown) > MAX_KEYS_SHOWN else ""
        raise CheckpointError(f"{label}: unexpected keys for a Depth Anything 3 checkpoint: "
                              f"{', '.join(unknown[:MAX_KEYS_SHOWN])}{more}")
    return renamed


# ----------------------------------------------------------------------------------- presets
def _signature(state: dict[str, torch.Tensor], label: str) -> dict[str, object]:
    """What tells the presets apart, read from the tensors."""
    cls = state.get(PREFIX + "backbone.pretrained.cls_token")
    if cls is None or cls.dim() != 3:
        raise CheckpointError(f"{label}: not a Depth Anything 3 checkpoint (no {PREFIX}backbone.pretrained.cls_token)")
    blocks = {int(m.group(1)) for k in state if (m := re.match(_BLOCKS, k))}
    return {
        "width": int(cls.shape[-1]),
        "blocks": max(blocks) + 1 if blocks else 0,
        "camera token": PREFIX + "backbone.pretrained.camera_token" in state,
        "head": DUALDPT if PREFIX + "head.norm.weight" in state else DPT,
        "sky branch": any(k.startswith(PREFIX + "head.scratch.sky_output_conv2.") for k in state),
    }


def _expected(config: DA3Config) -> dict[str, object]:
    return {"width": config.encoder.embed_dim, "blocks": config.encoder.depth,
            "camera token": config.alternate_from is not None, "head": config.head, "sky branch": config.sky}


def _mismatch(config: DA3Config, found: dict[str, object]) -> str:
    want = _expected(config)
    return ", ".join(f"{k} {_show(found[k])}, want {_show(want[k])}" for k in want if found[k] != want[k])


def _show(value: object) -> str:
    return ("yes" if value else "no") if isinstance(value, bool) else str(value)


def _preset_from_tensors(state: dict[str, torch.Tensor], label: str, source: str) -> DA3Config:
    found = _signature(state, label)
    candidates = [c for c in PRESETS.values() if not _mismatch(c, found)]
    if not candidates:
        described = ", ".join(f"{k} {_show(v)}" for k, v in found.items())
        raise CheckpointError(f"{label}: tensors fit no Depth Anything 3 preset ({described}; "
                              f"supported: {', '.join(PRESETS)})")
    if len(candidates) == 1:
        return candidates[0]
    for part in reversed(Path(source).parts):  # the file's own name first, then its folders
        hinted = [c for c in candidates if _name_hint(c.preset) in part.lower()]
        if len(hinted) == 1:
            return hinted[0]
    names = " and ".join(c.preset for c in candidates)
    raise CheckpointError(f"{label}: {names} have the same tensors and nothing says which this is: keep the "
                          f"config.json beside the weights, or name the file after the model")


def _name_hint(preset: str) -> str:
    """``da3metric-large`` -> ``metric``: what a file or repo name of that model contains."""
    return preset.removeprefix("da3").split("-")[0] or preset
