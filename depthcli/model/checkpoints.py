"""Read any supported checkpoint into one state dict and the config it implies.

Checkpoints are untrusted input: ``.pth`` files go through ``torch.load(weights_only=True)``
(no arbitrary objects are ever unpickled), after ``archive.py`` has checked the zip archive and
decided whether it may be memory-mapped; everything else is safetensors. A shard index may only
name files inside its folder.

What is read from where:
- encoder size and head widths: tensor shapes;
- V1 or V2, metric or relative: depthcli metadata, a transformers ``config.json``, or the
  published file names (``depth_anything_vits14.pth`` is V1, ``depth_anything_v2_*`` is V2,
  ``*metric_hypersim*`` / ``*metric_vkitti*`` are the 20 m / 80 m metric models);
  an explicit ``version=`` / ``max_depth=`` wins over all of them;
- Video Depth Anything: its keys (motion modules; ``video_depth_anything/checkpoint.py``) or
  depthcli metadata, metric-ness from the metadata or the name (``metric_video_depth_anything_*``);
- Depth Anything 3 (``depth_anything_3/checkpoint.py``): its Hub folder or ``.safetensors``
  file, the preset from ``config.json``'s ``model_name`` or the tensors; depthcli's own files
  say ``family`` and the whole config in their metadata.

A safetensors file written by ``safetensors.torch.save_model`` (the Hugging Face Hub mixin)
stores a tensor shared under several names once and lists the dropped names in its metadata
(``{dropped: kept}``): they are put back, as the same tensor, when read.
"""
from __future__ import annotations

import json
import math
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoint_keys as keys
from .archive import ArchiveError, inspect_archive, is_torch_zip
from .checkpoint_files import weight_files
from .configs import METRIC_MAX_DEPTH, ModelConfig, encoder_for_shapes
from .depth_anything_3 import checkpoint as da3_checkpoint
from .depth_anything_3.config import FAMILY as DA3_FAMILY
from .depth_anything_3.config import DA3Config
from .errors import CheckpointError
from .families import network_class
from .video_depth_anything import checkpoint as vda_checkpoint
from .video_depth_anything.config import FAMILY as VDA_FAMILY
from .video_depth_anything.config import VDAConfig

METADATA_FORMAT = "depthcli"
MAX_KEYS_SHOWN = 4


@dataclass
class Checkpoint:
    state: dict[str, torch.Tensor]  # depthcli names
    config: ModelConfig | DA3Config | VDAConfig  # the family's config (model/families.py)
    source: str
    layout: str  # "original", "transformers", "depthcli" or "da3" (the Depth Anything 3 layout)


# ----------------------------------------------------------------------------------- reading
def _load_pickle_safely(path: Path) -> dict:
    """torch.load(weights_only=True), memory-mapped only when the archive checks say the mapped
    bytes are exactly the tensors' (``archive.py``); otherwise the same tensors, copied."""
    mmap = False
    try:
        if is_torch_zip(path):
            mmap = inspect_archive(path).mappable
    except ArchiveError as e:
        raise CheckpointError(f"{path.name}: not a readable PyTorch checkpoint ({e})") from e
    except OSError as e:
        raise CheckpointError(f"{path.name}: not a readable PyTorch checkpoint ({e.strerror or e})") from e
    try:
        with warnings.catch_warnings():  # a damaged file makes torch warn about what it unpickles
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        reason = _torch_reason(e)
        if reason.startswith("Unsupported global"):
            raise CheckpointError(f"{path.name}: refused to load: it holds objects other than tensors "
                                  f"({reason})") from e
        raise CheckpointError(f"{path.name}: not a readable PyTorch checkpoint ({reason})") from e
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - corrupt files raise anything from RuntimeError to KeyError
        raise CheckpointError(f"{path.name}: not a readable PyTorch checkpoint ({_torch_reason(e)})") from e
    for wrapper in ("model", "state_dict", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path.name}: holds no state dict of tensors")
    return obj


def _torch_reason(e: BaseException) -> str:
    """The informative part of torch.load's multi-paragraph errors, as one short line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
        text = re.split(r" was not an allowed global", text, maxsplit=1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    first = re.split(r"(?<=[a-z0-9])\. ", lines[0], maxsplit=1)[0].rstrip(".")
    first = re.split(r" tensor\(", first, maxsplit=1)[0]  # damaged files: no tensor dumps in messages
    return first if len(first) <= 160 else first[:157] + "..."


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, ValueError, ... for a corrupt file
        raise CheckpointError(f"{path.name}: not a readable safetensors file ({_torch_reason(e)})") from e
    return _with_shared_names(state, meta), meta


def _with_shared_names(state: dict[str, torch.Tensor], meta: dict[str, str]) -> dict[str, torch.Tensor]:
    """The names ``save_model`` dropped for shared tensors (metadata ``{dropped: kept}``), back."""
    aliases = {k: v for k, v in meta.items() if k not in state and v in state}
    return {**state, **{dropped: state[kept] for dropped, kept in aliases.items()}} if aliases else state


def _read_directory(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """A transformers model folder or hub snapshot (Depth Anything 3's too): config.json + weights."""
    cfg_file = path / "config.json"
    try:
        config = json.loads(cfg_file.read_text()) if cfg_file.exists() else {}
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{cfg_file}: unreadable config.json ({e})") from e
    files = weight_files(path)
    if files and files[0].name == "pytorch_model.bin":
        return _load_pickle_safely(files[0]), config
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(_load_safetensors(file)[0])
    return state, config


def _only_tensors(state: dict, source: str) -> dict[str, torch.Tensor]:
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: entries that are not tensors: {', '.join(map(str, bad[:MAX_KEYS_SHOWN]))}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


# ----------------------------------------------------------------------------------- layout
def _layout(state: dict[str, torch.Tensor], source: str = "") -> str:
    """original (``pretrained.`` + ``depth_head.``, VDA: + ``head.``), transformers or depthcli:
    the same three words for every family."""
    firsts = {k.split(".", 1)[0] for k in state}
    if "pretrained" in firsts or "depth_head" in firsts:
        return "original"
    if "backbone" in firsts or "neck" in firsts:
        return "transformers"
    if "encoder" in firsts or "reassemble" in firsts:
        return "depthcli"
    raise CheckpointError(f"{source}: not a Depth-Anything checkpoint: unknown keys "
                          + ", ".join(sorted(state)[:MAX_KEYS_SHOWN]))


def _to_depthcli_names(state: dict[str, torch.Tensor], layout: str, source: str) -> dict[str, torch.Tensor]:
    if layout == "depthcli":
        return state
    rules, unused = ((keys.ORIGINAL_RULES, keys.ORIGINAL_UNUSED) if layout == "original"
                     else (keys.TRANSFORMERS_RULES, keys.TRANSFORMERS_UNUSED))
    renamed, unknown = keys.rename(state, rules, unused)
    if unknown:
        raise CheckpointError(f"{source}: unexpected keys for a Depth-Anything checkpoint in the {layout} layout: "
                              + ", ".join(unknown[:MAX_KEYS_SHOWN])
                              + (f" (+{len(unknown) - MAX_KEYS_SHOWN} more)" if len(unknown) > MAX_KEYS_SHOWN else ""))
    return keys.fuse_qkv(renamed) if layout == "transformers" else renamed


# ----------------------------------------------------------------------------------- config
def _shape(state: dict[str, torch.Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"{source}: missing key {key}")
    return tuple(state[key].shape)


def _version_from_name(name: str) -> int | None:
    name = name.lower()
    if re.search(r"depth[_-]?anything[_-]?v2|(^|[_-])v2([_-]|$)", name):
        return 2
    if re.search(r"depth[_-]?anything[_-]?(vit[sblg]14|small|base|large)", name):
        return 1
    return None


def _max_depth_from_name(name: str) -> float | None:
    name = name.lower()
    for dataset, metres in METRIC_MAX_DEPTH.items():
        if dataset in name:
            return metres
    if "metric" in name:
        if "indoor" in name:
            return METRIC_MAX_DEPTH["hypersim"]
        if "outdoor" in name:
            return METRIC_MAX_DEPTH["vkitti"]
    return None


def _infer_config(state: dict[str, torch.Tensor], source: str, *, name: str, meta: dict,
                  version: int | None, max_depth: float | None) -> ModelConfig:
    embed_dim = _shape(state, "encoder.cls_token", source)[-1]
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.blocks\.(\d+)\.", k))}
    if not blocks:
        raise CheckpointError(f"{source}: no transformer blocks found")
    out_channels = tuple(_shape(state, f"reassemble.projections.{i}.weight", source)[0] for i in range(4))
    features = _shape(state, "reassemble.to_features.0.weight", source)[0]
    heads = meta.get("num_heads")
    enc = encoder_for_shapes(embed_dim, max(blocks) + 1, int(heads) if heads else None,
                             out_channels=out_channels, features=features)  # type: ignore[arg-type]
    taps = tuple(int(t) for t in meta["taps"]) if meta.get("taps") else ()
    implied = (1 if taps == tuple(range(enc.depth - 4, enc.depth)) else 2) if taps else None
    if version is None:
        version = meta.get("version") or implied or _version_from_name(name)
    if version is None:
        raise CheckpointError(f"{source}: cannot tell whether this is a Depth-Anything V1 or V2 checkpoint "
                              f"(same tensors, different feature taps); pass --model-version 1 or 2 "
                              f"(version=1 or 2 in Python)")
    version = int(version)
    if implied is not None and implied != version:
        taps = ()  # an explicit version overrides the taps that came with the file
    if max_depth is None:
        md = meta.get("max_depth")
        if md not in (None, "", "none"):
            max_depth = float(md)
        elif "max_depth" not in meta:  # only a file that does not say may be named metric
            max_depth = _max_depth_from_name(name)
    try:
        return ModelConfig(enc, version=version, max_depth=max_depth, taps=taps)
    except ValueError as e:
        raise CheckpointError(f"{source}: {e}") from e


def _transformers_meta(config: dict) -> dict:
    """version/taps/metric/heads from a transformers DepthAnythingConfig dict."""
    if config.get("model_type") not in (None, "depth_anything"):
        raise CheckpointError(f"config.json is for a {config.get('model_type')!r} model, not depth_anything")
    backbone = config.get("backbone_config") or {}
    meta: dict = {}
    if backbone.get("num_attention_heads"):
        meta["num_heads"] = backbone["num_attention_heads"]
    if backbone.get("out_indices"):  # stage 0 is the embedding, so stage i is block i - 1
        meta["taps"] = [int(i) - 1 for i in backbone["out_indices"]]
    if config.get("depth_estimation_type") == "metric":
        meta["max_depth"] = config.get("max_depth") or 1.0
    return meta


# ----------------------------------------------------------------------------------- public
def read_checkpoint(source: str | Path, *, version: int | None = None,
                    max_depth: float | None = None) -> Checkpoint:
    """Read a checkpoint file or folder into depthcli names and the config it implies."""
    path = Path(source)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    meta: dict = {}
    name = path.name
    if path.is_dir():
        raw, config = _read_directory(path)
        if da3_checkpoint.recognise(raw.keys(), config):
            return _read_da3(raw, config, path, version=version, max_depth=max_depth)
        if config.get("model_type") == "depth_anything" or "backbone_config" in config:
            meta = _transformers_meta(config)
        elif "encoder" in config:  # the V1 hub repos: PyTorchModelHubMixin config + original keys
            meta = {"version": 1}
        name = str(path)  # hub snapshot folders carry the repo name higher up
    elif path.suffix == ".safetensors":
        raw, file_meta = _load_safetensors(path)
        if file_meta.get("format") == METADATA_FORMAT and file_meta.get("depthcli.family") == DA3_FAMILY:
            return _read_depthcli_da3(raw, file_meta, path, version=version, max_depth=max_depth)
        if file_meta.get("format") == METADATA_FORMAT:
            meta = {k.split(".", 1)[1]: v for k, v in file_meta.items() if k.startswith("depthcli.")}
            if meta.get("taps"):
                meta["taps"] = meta["taps"].split(",")
        elif "config" in file_meta:
            meta = _transformers_meta(json.loads(file_meta["config"]))
    else:
        raw = _load_pickle_safely(path)
    state = _only_tensors(raw, path.name)
    if da3_checkpoint.recognise(state.keys(), None):
        return _read_da3(state, _sibling_config(path), path, version=version, max_depth=max_depth)
    layout = _layout(state, path.name)
    if meta.get("family") == VDA_FAMILY or vda_checkpoint.recognise(state, name):
        vda_config, state = vda_checkpoint.read(state, name, path.name, meta=meta)
        return Checkpoint(state=state, config=vda_config, source=str(path), layout=layout)
    state = _to_depthcli_names(state, layout, path.name)
    config = _infer_config(state, path.name, name=name, meta=meta, version=version, max_depth=max_depth)
    return Checkpoint(state=state, config=config, source=str(path), layout=layout)


def _no_v1_v2_options(path: Path, version: int | None, max_depth: float | None) -> None:
    if version is not None or max_depth is not None:
        raise CheckpointError(f"{path.name}: a Depth Anything 3 model: version and max_depth apply to "
                              f"Depth-Anything V1/V2 checkpoints only")


def _sibling_config(path: Path) -> dict | None:
    """The config.json beside a single Depth Anything 3 weight file (its Hub folder), if any."""
    try:
        config = json.loads((path.parent / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and "model_name" in config else None


def _read_da3(raw: dict, config: dict | None, path: Path, *, version: int | None,
              max_depth: float | None) -> Checkpoint:
    _no_v1_v2_options(path, version, max_depth)
    cfg, state = da3_checkpoint.read(_only_tensors(raw, path.name), config, str(path))
    return Checkpoint(state=state, config=cfg, source=str(path), layout="da3")


def _read_depthcli_da3(raw: dict, file_meta: dict[str, str], path: Path, *, version: int | None,
                       max_depth: float | None) -> Checkpoint:
    _no_v1_v2_options(path, version, max_depth)
    try:
        cfg = DA3Config.from_dict(json.loads(file_meta["depthcli.config"]))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path.name}: unreadable Depth Anything 3 config in the metadata ({e})") from e
    return Checkpoint(state=_only_tensors(raw, path.name), config=cfg, source=str(path), layout="depthcli")


def build_model(checkpoint: Checkpoint) -> torch.nn.Module:
    """Construct the network for a checkpoint and load it strictly, naming the first bad keys."""
    cfg = checkpoint.config
    with torch.device("meta"):
        model = network_class(cfg.family)(cfg)
    expected = model.state_dict()
    missing = [k for k in expected if k not in checkpoint.state]
    unexpected = [k for k in checkpoint.state if k not in expected]
    misshaped = [f"{k} {tuple(checkpoint.state[k].shape)} (want {tuple(v.shape)})"
                 for k, v in expected.items() if k in checkpoint.state and checkpoint.state[k].shape != v.shape]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("wrong shapes", misshaped)):
        if items:
            more = f" (+{len(items) - MAX_KEYS_SHOWN} more)" if len(items) > MAX_KEYS_SHOWN else ""
            problems.append(f"{label}: {', '.join(items[:MAX_KEYS_SHOWN])}{more}")
    if problems:
        raise CheckpointError(f"{Path(checkpoint.source).name}: does not fit the {cfg.describe} model; "
                              + "; ".join(problems))
    bad = [k for k, v in checkpoint.state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{Path(checkpoint.source).name}: non-finite values in {', '.join(bad[:MAX_KEYS_SHOWN])}")
    model.load_state_dict({k: v.float() for k, v in checkpoint.state.items()}, strict=True, assign=True)
    return model.eval()


def save_safetensors(model: torch.nn.Module, path: str | Path, *, metadata: dict[str, str] | None = None) -> None:
    """Write depthcli's own format: safetensors plus the metadata that makes it self-describing
    (and ``metadata``, e.g. the published model it is). Depth Anything V1/V2 keep their keys
    (``depthcli.version``, ...); the other families store ``depthcli.family`` and the whole
    config as JSON in ``depthcli.config``."""
    from safetensors.torch import save_file

    cfg = model.config
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    extra = dict(metadata or {})
    if cfg.family != ModelConfig.family:
        save_file(state, str(path), metadata={"format": METADATA_FORMAT, "depthcli.family": cfg.family,
                                              "depthcli.encoder": cfg.encoder.name,
                                              "depthcli.config": json.dumps(cfg.to_dict(), sort_keys=True),
                                              **extra})
        return
    meta = {
        "format": METADATA_FORMAT,
        "depthcli.version": str(cfg.version),
        "depthcli.encoder": cfg.encoder.name,
        "depthcli.num_heads": str(cfg.encoder.num_heads),
        "depthcli.taps": ",".join(map(str, cfg.taps)),
        "depthcli.max_depth": "" if cfg.max_depth is None else repr(cfg.max_depth),
        **extra,
    }
    save_file(state, str(path), metadata=meta)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())
