"""Checkpoints as ordinary tools leave them: ``.pth`` archives re-packed by a zip tool, and
sharded transformers folders whose index points elsewhere.

A ``.pth`` is read to exactly the tensors ``torch.load(weights_only=True)`` gives, whatever the
entries' compression; a damaged archive is one line naming what is wrong with it; a shard index
may only name files inside its folder. Archive-level fuzzing is in ``test_fuzz.py``.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import fuzz_cases as fc
import numpy as np
import pytest
import torch
from cli_helpers import SIZE_ARG, lines, run_cli, write_image
from model_factory import ModelSpec, ReferenceModels
from safetensors.torch import load_file, save_file

from depthcli.model import CheckpointError, read_checkpoint
from depthcli.model.archive import inspect_archive

TORCH = {"DEPTHCLI_BACKEND": "torch"}  # checkpoint reading is backend-independent: no conversion per file

PUBLISHED_V1 = ModelSpec("tiny", 1)  # written under the published name depth_anything_vits14.pth
TINY_V2 = ModelSpec("tiny", 2)
DEFLATED = 8


@pytest.fixture
def published(reference_models: ReferenceModels, tmp_path: Path) -> Path:
    """A fresh copy of a checkpoint in the published format and under its published name."""
    source = reference_models.get(PUBLISHED_V1).original_pth()
    assert source.name == "depth_anything_vits14.pth"
    copy = tmp_path / "orig" / source.name
    copy.parent.mkdir()
    shutil.copyfile(source, copy)
    return copy


def rezipped(published: Path, which: str) -> Path:
    """``published`` re-packed by Python's zipfile: every entry / every other entry DEFLATEd, or
    none (stored, but no longer 64-byte aligned); same file name, in a sibling folder."""
    data = published.read_bytes()
    names = list(fc.central_records(data))
    deflate = {"all": set(names), "some": set(names[::2]), "none": set()}[which]
    out = published.parent.parent / f"rezip-{which}" / published.name
    out.parent.mkdir()
    out.write_bytes(fc.rezip(data, lambda name: DEFLATED if name in deflate else 0))
    return out


def assert_same_tensors(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for key, tensor in expected.items():
        assert actual[key].dtype == tensor.dtype and torch.equal(actual[key], tensor), key


# ----------------------------------------------------------------------------------- re-zipped
@pytest.mark.parametrize("which", ["all", "some", "none"])
def test_rezipped_pth_reads_to_torch_loads_tensors(published: Path, which: str) -> None:
    repacked = rezipped(published, which)
    # the re-packed file is a valid checkpoint: torch.load gives exactly the original tensors
    reference = torch.load(repacked, map_location="cpu", weights_only=True)
    assert_same_tensors(reference, torch.load(published, map_location="cpu", weights_only=True))
    assert_same_tensors(read_checkpoint(repacked).state, read_checkpoint(published).state)
    # torch.save's own file is mapped; the re-packed one (compressed or unaligned) is copied
    assert inspect_archive(published).mappable
    plan = inspect_archive(repacked)
    assert not plan.mappable and plan.why_copied.endswith(("is compressed", "is not 64-byte aligned"))


def test_rezipped_pth_gives_the_same_depth(published: Path, tmp_path: Path) -> None:
    """Through the installed CLI, as the issue reports it (re-zipped files used to stop with
    'non-finite values', or run with the compressed bytes as weights)."""
    write_image(tmp_path / "x.png")
    depth = {}
    for which, model in (("orig", published), ("all", rezipped(published, "all")),
                         ("some", rezipped(published, "some"))):
        proc = run_cli("image", "x.png", "--model", model, "--format", "npy", "-o", f"out-{which}", *SIZE_ARG,
                       cwd=tmp_path, env=TORCH)
        assert proc.returncode == 0, proc.stderr
        depth[which] = np.load(tmp_path / f"out-{which}" / "x_depth.npy")
    assert depth["orig"].shape == (48, 64) and float(depth["orig"].std()) > 0
    assert np.array_equal(depth["all"], depth["orig"])
    assert np.array_equal(depth["some"], depth["orig"])


# ----------------------------------------------------------------------------------- damaged archives
def _mutation(published: Path, name: str) -> tuple[Path, str]:
    data, reason = fc.archive_mutations(published.read_bytes(), seed=0)[name]
    path = published.parent / f"depth_anything_vits14_{name}.pth"
    path.write_bytes(data)
    return path, reason


@pytest.mark.parametrize(("name", "reason"), [
    ("cut_central_directory", "truncated archive: the zip central directory at the end of the file is missing"),
    ("size_beyond_file", "truncated archive: entry "),
    ("data_flip_deflated", "compressed entry "),
    ("method_bzip2", "is compressed with bzip2; PyTorch reads only stored or DEFLATE entries"),
    ("entry_short", "size mismatch: entry "),
    ("size_stored_disagree", "size mismatch: entry "),
    ("duplicate_appended", "appears twice"),
    ("encrypted", "is encrypted"),
    ("entry_missing", "but the archive has no entry"),
])
def test_damaged_archive_is_one_line_naming_the_cause(published: Path, name: str, reason: str) -> None:
    path, fuzz_reason = _mutation(published, name)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"{path.name}: not a readable PyTorch checkpoint (")
    assert reason in message and fuzz_reason in message
    assert "\n" not in message and len(message) < 400


def test_damaged_compressed_entry_exits_3_through_the_cli(published: Path, tmp_path: Path) -> None:
    """torch.load itself decompresses this file to garbage without complaint (no CRC check)."""
    path, _ = _mutation(published, "data_flip_deflated")
    write_image(tmp_path / "x.png")
    proc = run_cli("image", "x.png", "--model", path, "--format", "npy", *SIZE_ARG, cwd=tmp_path, env=TORCH)
    assert proc.returncode == 3
    assert lines(proc.stderr) == [line for line in lines(proc.stderr) if line.startswith("depthcli: error: ")]
    assert len(lines(proc.stderr)) == 1 and "compressed entry" in proc.stderr and "cannot be read" in proc.stderr
    assert "non-finite" not in proc.stderr
    assert not (tmp_path / "x_depth.npy").exists()


def test_objects_other_than_tensors_still_refused_in_a_rezipped_file(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    evil = fc.malicious_pickles(marker)["evil_zip.pth"]
    path = tmp_path / "depth_anything_v2_evil.pth"
    path.write_bytes(fc.rezip(evil, lambda name: DEFLATED))
    with pytest.raises(CheckpointError, match="refused to load: it holds objects other than tensors"):
        read_checkpoint(path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # TorchScript files still exist in the wild
def test_torchscript_archive_is_named(tmp_path: Path) -> None:
    path = tmp_path / "depth_anything_v2_scripted.pth"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(CheckpointError, match="a TorchScript archive made by torch.jit.save, not a checkpoint"):
        read_checkpoint(path)


# ----------------------------------------------------------------------------------- shard indexes
SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


@pytest.fixture
def shards(reference_models: ReferenceModels, tmp_path: Path) -> tuple[Path, list[dict[str, torch.Tensor]]]:
    """A transformers folder's config.json and its weights split in two shard states."""
    folder = reference_models.get(TINY_V2).transformers_dir()
    state = load_file(str(folder / "model.safetensors"))
    names = sorted(state)
    half = len(names) // 2
    return folder / "config.json", [{k: state[k] for k in names[:half]}, {k: state[k] for k in names[half:]}]


def sharded_folder(path: Path, shards: tuple[Path, list[dict]], names: tuple[str, str] = SHARDS,
                   write_at: tuple[Path | None, Path | None] = (None, None)) -> Path:
    """A sharded model folder whose index maps to ``names``; each shard written at ``write_at``
    (default: ``path / name``)."""
    config, states = shards
    path.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(config, path / "config.json")
    weight_map = {}
    for name, state, where in zip(names, states, write_at, strict=True):
        target = where or path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(target))
        weight_map.update(dict.fromkeys(state, name))
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return path


def test_sharded_folder_loads(shards: tuple[Path, list[dict]], tmp_path: Path,
                              reference_models: ReferenceModels) -> None:
    folder = sharded_folder(tmp_path / "model", shards)
    whole = read_checkpoint(reference_models.get(TINY_V2).transformers_dir())
    assert_same_tensors(read_checkpoint(folder).state, whole.state)


def test_index_leaving_the_folder_exits_3_through_the_cli(shards: tuple[Path, list[dict]], tmp_path: Path) -> None:
    """The issue's case: ``../elsewhere/...`` exists and holds valid weights; it is not read."""
    escape = "../elsewhere/" + SHARDS[0]
    folder = sharded_folder(tmp_path / "model", shards, names=(escape, SHARDS[1]),
                            write_at=(tmp_path / "elsewhere" / SHARDS[0], None))
    write_image(tmp_path / "x.png")
    proc = run_cli("image", "x.png", "--model", folder, *SIZE_ARG, cwd=tmp_path, env=TORCH)
    assert proc.returncode == 3, proc.stderr
    assert len(lines(proc.stderr)) == 1 and proc.stderr.startswith("depthcli: error: ")
    assert f"weight map names {escape!r}, not a file inside the folder" in proc.stderr
    assert not (tmp_path / "x_depth.png").exists()


@pytest.mark.parametrize("kind", ["dotdot-inside", "absolute", "windows-dotdot", "symlink-out"])
def test_index_entries_outside_the_folder_are_refused(shards: tuple[Path, list[dict]], tmp_path: Path,
                                                      kind: str) -> None:
    outside = tmp_path / "elsewhere" / SHARDS[0]
    name = {"dotdot-inside": f"sub/../../elsewhere/{SHARDS[0]}", "absolute": str(outside),
            "windows-dotdot": f"..\\elsewhere\\{SHARDS[0]}", "symlink-out": SHARDS[0]}[kind]
    folder = sharded_folder(tmp_path / "model", shards, names=(name, SHARDS[1]),
                            write_at=(outside, None))
    if kind == "symlink-out":
        (folder / SHARDS[0]).symlink_to(outside)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(folder)
    message = str(caught.value)
    assert "\n" not in message and str(folder / "model.safetensors.index.json") in message
    assert ("symlink out of the folder" if kind == "symlink-out" else "not a file inside the folder") in message


def test_symlinks_inside_the_folder_and_the_hub_cache_layout_load(shards: tuple[Path, list[dict]],
                                                                   tmp_path: Path) -> None:
    reference = read_checkpoint(sharded_folder(tmp_path / "plain", shards)).state
    # a shard that is a symlink to another file of the same folder
    folder = sharded_folder(tmp_path / "linked", shards, write_at=(tmp_path / "linked" / "real.safetensors", None))
    (folder / SHARDS[0]).symlink_to("real.safetensors")
    assert_same_tensors(read_checkpoint(folder).state, reference)
    # the Hugging Face cache: snapshots/<rev>/<file> -> ../../blobs/<hash>
    repo = tmp_path / "hub" / "models--someone--depth"
    snapshot = repo / "snapshots" / "0123abcd"
    blobs = (repo / "blobs" / "aaaa", repo / "blobs" / "bbbb")
    sharded_folder(snapshot, shards, write_at=blobs)
    for name, blob in zip(SHARDS, blobs, strict=True):
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    assert_same_tensors(read_checkpoint(snapshot).state, reference)
