"""Key maps from each on-disk layout to depthcli's own parameter names.

Three layouts exist in the wild:
- original: the ``.pth`` files of LiheYoung/Depth-Anything and DepthAnything/Depth-Anything-V2
  (``pretrained.*`` = DINOv2, ``depth_head.*`` = DPT head);
- transformers: ``DepthAnythingForDepthEstimation`` (``backbone.*``, ``neck.*``, ``head.*``), with
  attention stored as separate query/key/value projections, named ``attention.attention.query``
  before transformers 5 and ``attention.q_proj`` since;
- depthcli: this package's own names (``encoder.*``, ``reassemble.*``, ``fusion.*``, ``head.*``).
"""
from __future__ import annotations

import re
from collections.abc import Callable

import torch

Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _rules(pairs: list[tuple[str, str | Callable[[re.Match[str]], str]]]) -> list[Rule]:
    out: list[Rule] = []
    for pattern, target in pairs:
        fn = target if callable(target) else (lambda m, t=target: m.expand(t))
        out.append((re.compile(pattern + r"\Z"), fn))
    return out


def _fusion_index_from_refinenet(m: re.Match[str]) -> str:
    return str(int(m.group(1)) - 1)


ORIGINAL_RULES = _rules([
    (r"pretrained\.cls_token", "encoder.cls_token"),
    (r"pretrained\.pos_embed", "encoder.position_encoding.table"),
    (r"pretrained\.patch_embed\.proj\.(weight|bias)", r"encoder.patch_embed.proj.\1"),
    (r"pretrained\.blocks\.(\d+)\.(norm[12]\.(?:weight|bias)|attn\.(?:qkv|proj)\.(?:weight|bias)"
     r"|ls[12]\.gamma|mlp\.fc[12]\.(?:weight|bias))", r"encoder.blocks.\1.\2"),
    (r"pretrained\.norm\.(weight|bias)", r"encoder.norm.\1"),
    (r"depth_head\.projects\.(\d)\.(weight|bias)", r"reassemble.projections.\1.\2"),
    (r"depth_head\.resize_layers\.(\d)\.(weight|bias)", r"reassemble.resamplers.\1.\2"),
    (r"depth_head\.scratch\.layer(\d)_rn\.weight",
     lambda m: f"reassemble.to_features.{int(m.group(1)) - 1}.weight"),
    (r"depth_head\.scratch\.refinenet(\d)\.resConfUnit1\.(conv[12]\.(?:weight|bias))",
     lambda m: f"fusion.blocks.{_fusion_index_from_refinenet(m)}.skip_unit.{m.group(2)}"),
    (r"depth_head\.scratch\.refinenet(\d)\.resConfUnit2\.(conv[12]\.(?:weight|bias))",
     lambda m: f"fusion.blocks.{_fusion_index_from_refinenet(m)}.refine_unit.{m.group(2)}"),
    (r"depth_head\.scratch\.refinenet(\d)\.out_conv\.(weight|bias)",
     lambda m: f"fusion.blocks.{_fusion_index_from_refinenet(m)}.out_conv.{m.group(2)}"),
    (r"depth_head\.scratch\.output_conv1\.(weight|bias)", r"head.conv1.\1"),
    (r"depth_head\.scratch\.output_conv2\.0\.(weight|bias)", r"head.conv2.\1"),
    (r"depth_head\.scratch\.output_conv2\.2\.(weight|bias)", r"head.conv3.\1"),
])
# Stored by the originals but never used by their forward pass.
ORIGINAL_UNUSED = re.compile(r"pretrained\.mask_token|depth_head\.scratch\.refinenet4\.resConfUnit1\..*")

_HF_LAYER = r"backbone\.encoder\.layer\.(\d+)\."
TRANSFORMERS_RULES = _rules([
    (r"backbone\.embeddings\.cls_token", "encoder.cls_token"),
    (r"backbone\.embeddings\.position_embeddings", "encoder.position_encoding.table"),
    (r"backbone\.embeddings\.patch_embeddings\.projection\.(weight|bias)", r"encoder.patch_embed.proj.\1"),
    (_HF_LAYER + r"(norm[12]|mlp\.fc[12])\.(weight|bias)", r"encoder.blocks.\1.\2.\3"),
    (_HF_LAYER + r"layer_scale([12])\.lambda1", r"encoder.blocks.\1.ls\2.gamma"),
    (_HF_LAYER + r"attention\.(?:o_proj|output\.dense)\.(weight|bias)", r"encoder.blocks.\1.attn.proj.\2"),
    # query/key/value are concatenated into the fused qkv projection by fuse_qkv()
    (_HF_LAYER + r"attention\.(?:q_proj|attention\.query)\.(weight|bias)", r"encoder.blocks.\1.attn.q.\2"),
    (_HF_LAYER + r"attention\.(?:k_proj|attention\.key)\.(weight|bias)", r"encoder.blocks.\1.attn.k.\2"),
    (_HF_LAYER + r"attention\.(?:v_proj|attention\.value)\.(weight|bias)", r"encoder.blocks.\1.attn.v.\2"),
    (r"backbone\.layernorm\.(weight|bias)", r"encoder.norm.\1"),
    (r"neck\.reassemble_stage\.layers\.(\d)\.projection\.(weight|bias)", r"reassemble.projections.\1.\2"),
    (r"neck\.reassemble_stage\.layers\.(\d)\.resize\.(weight|bias)", r"reassemble.resamplers.\1.\2"),
    (r"neck\.convs\.(\d)\.weight", r"reassemble.to_features.\1.weight"),
    # transformers runs its fusion layers coarsest first: its layer 0 is the original refinenet4
    (r"neck\.fusion_stage\.layers\.(\d)\.projection\.(weight|bias)",
     lambda m: f"fusion.blocks.{3 - int(m.group(1))}.out_conv.{m.group(2)}"),
    (r"neck\.fusion_stage\.layers\.(\d)\.residual_layer1\.convolution([12])\.(weight|bias)",
     lambda m: f"fusion.blocks.{3 - int(m.group(1))}.skip_unit.conv{m.group(2)}.{m.group(3)}"),
    (r"neck\.fusion_stage\.layers\.(\d)\.residual_layer2\.convolution([12])\.(weight|bias)",
     lambda m: f"fusion.blocks.{3 - int(m.group(1))}.refine_unit.conv{m.group(2)}.{m.group(3)}"),
    (r"head\.conv([123])\.(weight|bias)", r"head.conv\1.\2"),
])
TRANSFORMERS_UNUSED = re.compile(r"backbone\.embeddings\.mask_token"
                                 r"|neck\.fusion_stage\.layers\.0\.residual_layer1\..*")

DEPTHCLI_UNUSED = re.compile(r"(?!)")  # matches nothing: our own files hold exactly what is used


def rename(state: dict[str, torch.Tensor], rules: list[Rule], unused: re.Pattern[str]
           ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Apply the first matching rule to every key; return (renamed, keys no rule knows)."""
    out, unknown = {}, []
    for key, tensor in state.items():
        if unused.fullmatch(key):
            continue
        for pattern, target in rules:
            m = pattern.match(key)
            if m:
                out[target(m)] = tensor
                break
        else:
            unknown.append(key)
    return out, unknown


def fuse_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Concatenate separate q/k/v projections (transformers) into one qkv projection."""
    out = dict(state)
    for key in [k for k in state if re.search(r"\.attn\.q\.(weight|bias)\Z", k)]:
        prefix, kind = key.rsplit(".q.", 1)
        parts = [out.pop(f"{prefix}.{p}.{kind}", None) for p in "qkv"]
        if any(p is None for p in parts):
            continue  # reported as a missing key by the caller
        out[f"{prefix}.qkv.{kind}"] = torch.cat(parts, dim=0)
    return out
