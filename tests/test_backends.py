"""The inference backends: OpenVINO gives torch's depth, its converted-model cache, the choice
of backend (``--backend``, ``$DEPTHCLI_BACKEND``, the fallback without openvino), and ``--fp16``
on a CPU.

Conversions dominate the cost here (seconds each, even for tiny models), so the tests share
them: one cache folder per session for the in-process backends, one ``$XDG_CACHE_HOME`` per
session for the CLI runs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import SIZE_ARG, cli_env, lines, popen_cli, run_cli, stop_process, write_image, write_video
from model_factory import ModelSpec, assert_non_degenerate, max_rel_error, sample_image

from depthcli import load_model
from depthcli.runtime.predictor import DepthPredictor

pytest.importorskip("openvino")

from depthcli.runtime.backends import openvino_backend, openvino_convert  # noqa: E402
from depthcli.runtime.backends.openvino_backend import OpenVinoBackend  # noqa: E402
from depthcli.runtime.backends.openvino_cache import ModelCache, entry_key  # noqa: E402
from depthcli.runtime.backends.openvino_convert import backend_for_model  # noqa: E402
from depthcli.runtime.backends.openvino_graph import position_table, recipe  # noqa: E402
from depthcli.runtime.device import cpu_has_bf16  # noqa: E402

PARITY_TOL = 1e-5
SPECS = [ModelSpec("tiny", 1), ModelSpec("tiny", 2), ModelSpec("tiny", 2, metric=True)]
# network input sizes (H, W): non-square both ways, the native 37x37 grid (no position resize)
SIZES = [(70, 98), (126, 56), (140, 140), (518, 518)]


@pytest.fixture(scope="session")
def ov_cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An $XDG_CACHE_HOME whose depthcli cache the in-process backends share."""
    return tmp_path_factory.mktemp("ov-cache-home")


@pytest.fixture(scope="session")
def ov_cache(ov_cache_home: Path) -> ModelCache:
    return ModelCache(ov_cache_home / "depthcli")


@pytest.fixture(scope="session")
def cli_cache_home(tmp_path_factory: pytest.TempPathFactory) -> str:
    """$XDG_CACHE_HOME for the CLI runs: the tiny model is converted once for all of them."""
    return str(tmp_path_factory.mktemp("xdg-cache"))


@pytest.fixture(scope="session")
def models(reference_models) -> dict[str, torch.nn.Module]:  # noqa: ANN001
    """The tiny V1, V2 and metric models, read from their original .pth files."""
    return {str(spec): load_model(reference_models.get(spec).original_pth(), device="cpu") for spec in SPECS}


@pytest.fixture(scope="session")
def backends(models, ov_cache: ModelCache) -> dict[str, OpenVinoBackend]:  # noqa: ANN001
    return {name: backend_for_model(m, precision="fp32", threads=1, cache=ov_cache) for name, m in models.items()}


def _ov_depth(backend: OpenVinoBackend, x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(backend.run(backend.to_input(x.numpy()))["depth"])


def _fresh(models, ov_cache: ModelCache, name: str = "tiny-v2", **kwargs) -> OpenVinoBackend:  # noqa: ANN001, ANN003
    """A new backend over the session's cache entry for ``name``: no conversion, nothing held."""
    key, _ = entry_key(_sha(models[name]), models[name].config.to_dict())
    entry, problem = ov_cache.find(key)
    assert entry is not None, problem
    return OpenVinoBackend.from_entry(entry, precision=kwargs.pop("precision", "fp32"), threads=1, **kwargs)


def _sha(model) -> str:  # noqa: ANN001
    from depthcli.runtime.fingerprint import tensors_sha256

    return tensors_sha256(model.state_dict())


# ------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("name", [str(s) for s in SPECS])
def test_openvino_matches_torch_on_every_size(name: str, models, backends) -> None:  # noqa: ANN001
    model, backend = models[name], backends[name]
    assert backend.dtype == "float32"  # f32 asked for explicitly, even on a bf16 CPU
    for i, (h, w) in enumerate(SIZES):
        x = sample_image(i, h, w)
        with torch.inference_mode():
            expected = model(x)
        for _ in range(2):  # the second call of a size runs its own statically compiled model
            actual = _ov_depth(backend, x)
            assert actual.shape == expected.shape == (1, h, w)
            err = max_rel_error(actual, expected)
            assert err <= PARITY_TOL, f"{name} {h}x{w}: max rel err {err:.2e}"
    assert_non_degenerate(actual)


def test_openvino_batch_of_two(models, backends) -> None:  # noqa: ANN001
    x = torch.cat([sample_image(7, 70, 98), sample_image(8, 70, 98)])
    with torch.inference_mode():
        expected = models["tiny-v2"](x)
    assert max_rel_error(_ov_depth(backends["tiny-v2"], x), expected) <= PARITY_TOL


def test_predictor_on_openvino_matches_torch_at_image_resolution(models, backends) -> None:  # noqa: ANN001
    """Through DepthPredictor: same preprocessing, the version's upsample, the stats name it."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (45, 80, 3), dtype=np.uint8)
    for name in ("tiny-v1", "tiny-v2"):
        ref = DepthPredictor(models[name], size=70)(image)
        got = DepthPredictor(config=models[name].config, size=70, backend=backends[name])(image)
        assert got.depth_hw.shape == ref.depth_hw.shape == (45, 80)
        assert got.depth_hw.dtype == np.float32
        assert max_rel_error(torch.from_numpy(got.depth_hw), torch.from_numpy(ref.depth_hw)) <= PARITY_TOL
        assert (got.stats.backend, got.stats.dtype, ref.stats.backend) == ("openvino", "float32", "torch")
        assert got.stats.line().endswith("openvino cpu fp32")


def test_bf16_runs_and_stays_close(models, backends, ov_cache: ModelCache) -> None:  # noqa: ANN001
    """bf16 is compiled from the same cached graph (no second conversion)."""
    assert backends["tiny-v2"] is not None  # the session fixture converted and stored it
    backend = _fresh(models, ov_cache, precision="bf16")
    assert not backend.notes  # a cache hit: the f32 graph serves both precisions
    assert backend.dtype == ("bfloat16" if cpu_has_bf16() else "float32")
    x = sample_image(3, 70, 98)
    with torch.inference_mode():
        expected = models["tiny-v2"](x)
    assert max_rel_error(_ov_depth(backend, x), expected) < 5e-2
    # the dtype said before anything was compiled is the one the plugin chose
    (held,) = backend._held.values()
    ran = held.compiled.get_property("INFERENCE_PRECISION_HINT")
    assert openvino_backend.DTYPE_NAME[getattr(ran, "get_type_name", lambda: str(ran))()] == backend.dtype


def test_public_predict_keeps_torch_by_default_and_takes_a_backend(models, backends, ov_cache: ModelCache,  # noqa: ANN001
                                                                    ov_cache_home: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import depthcli

    monkeypatch.setenv("XDG_CACHE_HOME", str(ov_cache_home))  # the fixture's entries: no conversion here
    monkeypatch.setattr(openvino_convert, "convert", _no_conversion)
    entries = sorted(p.name for p in ov_cache.root.iterdir())
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    image = np.random.default_rng(1).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    model = models["tiny-v2"]
    default = depthcli.predict(model, image, size=70)
    assert np.array_equal(default, DepthPredictor(model, size=70)(image).depth_hw)
    ov = depthcli.predict(model, image, size=70, backend="openvino")
    assert max_rel_error(torch.from_numpy(ov), torch.from_numpy(default)) <= PARITY_TOL
    again = depthcli.predict(model, image, size=70, backend="openvino")  # the same backend again
    assert max_rel_error(torch.from_numpy(again), torch.from_numpy(default)) <= PARITY_TOL
    assert sorted(p.name for p in ov_cache.root.iterdir()) == entries


# -------------------------------------------------------------------------------- cache
def _no_conversion(_model):  # noqa: ANN001, ANN202
    raise AssertionError("converted again despite a cached entry")


def _reuse_conversion(monkeypatch: pytest.MonkeyPatch, models, ov_cache: ModelCache, name: str) -> None:  # noqa: ANN001
    """Let ``convert`` hand back the graph the session already converted from the same model:
    what it would compute, without paying seconds for it again."""
    from depthcli.runtime.backends.openvino_cache import read_graph

    key, _ = entry_key(_sha(models[name]), models[name].config.to_dict())
    monkeypatch.setattr(openvino_convert, "convert", lambda _model: (read_graph(ov_cache.entry_folder(key) /
                                                                                 "model.xml"), 0.0))


def test_cache_hit_does_not_convert(models, backends, ov_cache: ModelCache,  # noqa: ANN001
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert backends["tiny-v2"] is not None  # the session fixture converted and stored it
    monkeypatch.setattr(openvino_convert, "convert", _no_conversion)
    again = backend_for_model(models["tiny-v2"], precision="fp32", threads=1, cache=ov_cache)
    assert again.notes == []
    x = sample_image(5, 84, 56)
    for _ in range(2):  # the second call: both run a model compiled for exactly this shape
        mine, theirs = _ov_depth(again, x), _ov_depth(backends["tiny-v2"], x)
    assert max_rel_error(mine, theirs) == 0


def test_shapes_compile_once_and_are_imported_by_the_next_run(models, backends, ov_cache: ModelCache) -> None:  # noqa: ANN001
    """One input of a shape runs the dynamic model; the second compiles the shape's own model;
    both are exported, so a new backend (the next run) imports them and compiles nothing.
    Alternating shapes (a folder of landscape and portrait photos) do not recompile."""
    assert backends["tiny-v2"] is not None
    for blob in (ov_cache.root.glob("*/compiled/*")):  # start without compiled blobs
        blob.unlink()
    a, b = sample_image(11, 70, 98), sample_image(12, 98, 70)
    backend = _fresh(models, ov_cache)
    used = []
    for x in (a, b, a, b, a, b, b, a):
        with torch.inference_mode():
            expected = models["tiny-v2"](x)
        staged = backend.to_input(x.numpy())
        used.append(staged[2].shape)
        assert max_rel_error(torch.from_numpy(backend.run(staged)["depth"]), expected) <= PARITY_TOL
    sa, sb = tuple(a.shape), tuple(b.shape)
    assert used == [None, None, sa, sb, sa, sb, sb, sa]
    assert backend.compiles == 3  # dynamic, a, b: no storm
    # a shape's own model replaced the dynamic one (one copy of the weights for a one-shape run);
    # a new shape imports the dynamic model's blob again rather than compiling it
    assert backend.held_shapes == [sb, sa]
    c = sample_image(13, 56, 84)
    with torch.inference_mode():
        expected = models["tiny-v2"](c)
    staged = backend.to_input(c.numpy())
    assert staged[2].shape is None and backend.compiles == 3
    assert max_rel_error(torch.from_numpy(backend.run(staged)["depth"]), expected) <= PARITY_TOL
    nxt = _fresh(models, ov_cache)
    for x in (b, a):
        staged = nxt.to_input(x.numpy())
        assert staged[2].shape == tuple(x.shape)  # its exported static model, imported
    assert nxt.compiles == 0


def test_a_broken_compiled_blob_is_compiled_again_with_a_note(models, backends, ov_cache: ModelCache) -> None:  # noqa: ANN001
    """Each run starts with a shape no run started with before, so each runs the dynamic model."""
    assert backends["tiny-v2"] is not None
    backend = _fresh(models, ov_cache)
    backend.run(backend.to_input(sample_image(15, 56, 56).numpy()))
    (blob,) = [p for p in ov_cache.root.glob("*/compiled/dynamic-*.blob") if p.parent.parent.name
               == backend._entry.key]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    again = _fresh(models, ov_cache)
    x = sample_image(16, 56, 42)
    with torch.inference_mode():
        expected = models["tiny-v2"](x)
    assert max_rel_error(_ov_depth(again, x), expected) <= PARITY_TOL
    assert again.compiles == 1 and len(again.notes) == 1 and "broken" in again.notes[0], again.notes
    fresh = _fresh(models, ov_cache)  # the blob written again is good
    staged = fresh.to_input(sample_image(17, 42, 56).numpy())
    fresh.run(staged)
    assert staged[2].shape is None and fresh.compiles == 0 and not fresh.notes


def test_a_run_starting_with_the_shape_an_earlier_run_started_with_compiles_it(models, backends,  # noqa: ANN001
                                                                               ov_cache: ModelCache) -> None:
    """One call per photo (a shell loop over one camera's pictures): the first call runs the
    dynamic model, the second compiles the shape's own model, the third imports it. A run whose
    first shape is another one only runs the dynamic model for that shape."""
    assert backends["tiny-v2"] is not None
    photo, other = sample_image(18, 84, 56), sample_image(19, 56, 84)
    used, compiles = [], []
    for first in (photo, photo, photo, other, photo):
        run = _fresh(models, ov_cache)
        staged = run.to_input(first.numpy())
        with torch.inference_mode():
            expected = models["tiny-v2"](first)
        assert max_rel_error(torch.from_numpy(run.run(staged)["depth"]), expected) <= PARITY_TOL
        used.append(staged[2].shape)
        compiles.append(run.compiles)
    sp = tuple(photo.shape)
    assert used == [None, sp, sp, None, sp]
    assert compiles == [0, 1, 0, 0, 0]  # the dynamic model: imported from the earlier tests' blob


def test_a_cache_entry_removed_while_running_is_a_clear_error(models, tmp_path: Path, ov_cache: ModelCache,  # noqa: ANN001
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    _reuse_conversion(monkeypatch, models, ov_cache, "tiny-v1")
    cache = ModelCache(tmp_path)
    backend = backend_for_model(models["tiny-v1"], precision="fp32", threads=1, cache=cache,
                                weights_sha256="4" * 64)
    _ov_depth(backend, sample_image(13, 70, 70))  # the dynamic model, compiled at the conversion
    shutil.rmtree(backend._entry.folder)
    from depthcli.model import CheckpointError

    x = sample_image(14, 56, 56)
    _ov_depth(backend, x)  # the dynamic model it holds still runs
    with pytest.raises(CheckpointError, match="removed or changed"):
        _ov_depth(backend, x)  # the second time: a static compile needs the graph


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps (Linux)")
def test_the_predictor_lets_go_of_the_mapped_checkpoint(tiny_ckpt: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenVINO holds its own weights, so the checkpoint file torch mapped is unmapped: on the
    first use (the torch model is dropped once converted) and on a cache hit (the checkpoint is
    not even read)."""
    from depthcli.runtime.loading import build_predictor
    from depthcli.runtime.spec import PredictorSpec

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    image = np.random.default_rng(2).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for first_use in (True, False):
        predictor = build_predictor(PredictorSpec(model=tiny_ckpt, device="cpu", backend="openvino", size=70))
        assert predictor.backend_name == "openvino" and predictor.model is None
        assert any("converted" in note for note in predictor.notes) == first_use
        assert predictor(image).depth_hw.shape == (40, 50)
        mapped = [line for line in Path("/proc/self/maps").read_text().splitlines()
                  if line.endswith(str(Path(tiny_ckpt).resolve()))]
        assert not mapped, (first_use, mapped)
        del predictor


def _corrupt(entry: Path, how: str) -> None:
    if how == "truncated bin":
        data = (entry / "model.bin").read_bytes()
        (entry / "model.bin").write_bytes(data[: len(data) // 2])
    elif how == "garbage position":
        (entry / "position.npy").write_bytes(b"\x93NUMPY garbage" + bytes(100))
    elif how == "no meta":
        (entry / "meta.json").unlink()
    elif how == "empty meta":
        (entry / "meta.json").write_text("")
    else:
        raise ValueError(how)


def _store(models, ov_cache: ModelCache, cache: ModelCache, name: str, sha: str):  # noqa: ANN001, ANN202
    from depthcli.runtime.backends.openvino_cache import read_graph

    model = models[name]
    key, material = entry_key(_sha(model), model.config.to_dict())
    graph = read_graph(ov_cache.entry_folder(key) / "model.xml")
    key, material = entry_key(sha, model.config.to_dict())
    return key, material, cache.store(key, graph, material, recipe(model), position_table(model)), graph


@pytest.mark.parametrize("how", ["truncated bin", "garbage position", "no meta", "empty meta"])
def test_broken_entry_is_refused_and_removed(how: str, models, backends, ov_cache: ModelCache,  # noqa: ANN001
                                             tmp_path: Path) -> None:
    assert backends["tiny-v1"] is not None
    cache = ModelCache(tmp_path)
    key, _, entry, _ = _store(models, ov_cache, cache, "tiny-v1", "0" * 64)
    assert cache.find(key)[0] is not None
    _corrupt(entry.folder, how)
    found, problem = cache.find(key)
    assert found is None and problem, how
    assert not entry.folder.exists() and not list(cache.root.iterdir())  # moved aside and deleted


def test_a_flipped_byte_in_the_graph_is_found_before_a_compile(models, backends, ov_cache: ModelCache,  # noqa: ANN001
                                                                tmp_path: Path) -> None:
    """Same size: only the checksum can tell. Checked when the graph is read for a compile
    (never on a run that imports its compiled blob, which does not read the graph)."""
    assert backends["tiny-v2"] is not None
    cache = ModelCache(tmp_path)
    _, _, entry, _ = _store(models, ov_cache, cache, "tiny-v2", "5" * 64)
    data = bytearray((entry.folder / "model.bin").read_bytes())
    data[len(data) // 3] ^= 0xFF
    (entry.folder / "model.bin").write_bytes(bytes(data))
    assert entry.verify_graph() is not None
    from depthcli.model import CheckpointError

    with pytest.raises(CheckpointError, match="removed or changed"):
        OpenVinoBackend.from_entry(entry, threads=1).prepare_dynamic()


def test_broken_entry_is_rebuilt_by_the_backend(models, backends, ov_cache: ModelCache, tmp_path: Path,  # noqa: ANN001
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _reuse_conversion(monkeypatch, models, ov_cache, "tiny-v2")
    cache = ModelCache(tmp_path)
    first = backend_for_model(models["tiny-v2"], precision="fp32", threads=1, cache=cache, weights_sha256="1" * 64)
    assert "converted" in first.notes[0]
    (entry,) = cache.root.iterdir()
    _corrupt(entry, "truncated bin")
    second = backend_for_model(models["tiny-v2"], precision="fp32", threads=1, cache=cache, weights_sha256="1" * 64)
    assert "broken" in second.notes[0] and "rebuilt" in second.notes[0], second.notes
    x = sample_image(9, 70, 70)
    with torch.inference_mode():
        expected = models["tiny-v2"](x)
    assert max_rel_error(_ov_depth(second, x), expected) <= PARITY_TOL
    assert cache.find(entry.name)[0] is not None  # the rebuilt entry is valid


def test_second_store_of_the_same_entry_keeps_the_first(models, backends, ov_cache: ModelCache,  # noqa: ANN001
                                                        tmp_path: Path) -> None:
    """What the losing process of a conversion race does: its rename fails, the entry stays."""
    assert backends["tiny-v1"] is not None
    cache = ModelCache(tmp_path)
    key, material, entry, graph = _store(models, ov_cache, cache, "tiny-v1", "2" * 64)
    meta = (entry.folder / "meta.json").read_text()
    model = models["tiny-v1"]
    assert cache.store(key, graph, material, recipe(model), position_table(model)).folder == entry.folder
    assert (entry.folder / "meta.json").read_text() == meta
    assert [p.name for p in cache.root.iterdir()] == [key]  # no temporary folder left


def test_unwritable_cache_still_runs(models, backends, ov_cache: ModelCache, tmp_path: Path,  # noqa: ANN001
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _reuse_conversion(monkeypatch, models, ov_cache, "tiny-v2")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    backend = backend_for_model(models["tiny-v2"], precision="fp32", threads=1, cache=ModelCache(blocker),
                                weights_sha256="3" * 64)
    assert "cannot cache" in backend.notes[0]
    x = sample_image(4, 56, 70)
    with torch.inference_mode():
        expected = models["tiny-v2"](x)
    for _ in range(2):  # the second time: a static model compiled from the graph in memory
        assert max_rel_error(_ov_depth(backend, x), expected) <= PARITY_TOL


def test_two_concurrent_first_runs_share_one_entry(tiny_ckpt: str, tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    write_image(image)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    procs = [popen_cli("image", image, "--model", tiny_ckpt, *SIZE_ARG, "-f", "npy", "-o", tmp_path / f"out{i}",
                       "--backend", "openvino", env=env, stderr_path=tmp_path / f"err{i}")
             for i in range(2)]
    try:
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            stop_process(p)
    errs = [(tmp_path / f"err{i}").read_text() for i in range(2)]
    assert codes == [0, 0], errs
    a, b = (np.load(tmp_path / f"out{i}" / "a_depth.npy") for i in range(2))
    # the later one may compile the shape's own model (the other run started with it): float precision apart
    assert max_rel_error(torch.from_numpy(a), torch.from_numpy(b)) <= PARITY_TOL
    root = tmp_path / "cache" / "depthcli" / "openvino"
    entries = list(root.iterdir())
    assert len(entries) == 1 and not entries[0].name.startswith("."), entries
    assert ModelCache(tmp_path / "cache" / "depthcli").find(entries[0].name)[0] is not None


# ----------------------------------------------------------------------------- the CLI
def _stats(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]


def test_cli_image_backends_agree(tiny_ckpt: str, tmp_path: Path, cli_cache_home: str) -> None:
    image = tmp_path / "a.png"
    write_image(image, 45, 80)
    env = {"XDG_CACHE_HOME": cli_cache_home}
    out = {}
    for backend in ("openvino", "torch"):
        proc = run_cli("image", image, "--model", tiny_ckpt, *SIZE_ARG, "-f", "npy", "-o", tmp_path / backend,
                       "--backend", backend, "--stats", "-", env=env)
        assert proc.returncode == 0, proc.stderr
        (stats,) = _stats(proc.stdout)
        assert stats["backend"] == backend and stats["dtype"] == "float32"
        err = lines(proc.stderr)
        assert err[-1].endswith(f"{backend} cpu fp32"), err
        out[backend] = np.load(tmp_path / backend / "a_depth.npy")
    assert max_rel_error(torch.from_numpy(out["openvino"]), torch.from_numpy(out["torch"])) <= PARITY_TOL


def test_cli_default_backend_is_openvino_and_env_picks_torch(tiny_ckpt: str, tmp_path: Path,
                                                             cli_cache_home: str) -> None:
    image = tmp_path / "a.png"
    write_image(image)
    # "": no $DEPTHCLI_BACKEND (cli_env's default for the other CLI tests is torch)
    for extra, expected in (({"DEPTHCLI_BACKEND": ""}, "openvino"), ({"DEPTHCLI_BACKEND": "torch"}, "torch")):
        proc = run_cli("image", image, "--model", tiny_ckpt, *SIZE_ARG, "-o", tmp_path / expected, "--stats", "-",
                       env={"XDG_CACHE_HOME": cli_cache_home, **extra})
        assert proc.returncode == 0, proc.stderr
        assert _stats(proc.stdout)[0]["backend"] == expected
    proc = run_cli("image", image, "--model", tiny_ckpt, *SIZE_ARG, "-o", tmp_path / "x",
                   env={"XDG_CACHE_HOME": cli_cache_home, "DEPTHCLI_BACKEND": "tensorrt"})
    assert proc.returncode == 2 and "DEPTHCLI_BACKEND" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_video_and_webcam_on_openvino(tiny_ckpt: str, tmp_path: Path, cli_cache_home: str) -> None:
    clip = write_video(tmp_path / "clip.mp4", n=5)
    env = {"XDG_CACHE_HOME": cli_cache_home}
    proc = run_cli("video", clip, "--model", tiny_ckpt, *SIZE_ARG, "-o", tmp_path / "v", "--backend", "openvino",
                   "--frames", "npy", "--stats", tmp_path / "v.jsonl", env=env)
    assert proc.returncode == 0, proc.stderr
    frames = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert len(frames) == 5 and {f["backend"] for f in frames} == {"openvino"}
    assert len(list((tmp_path / "v" / "clip_depth_frames").glob("*.npy"))) == 5
    proc = run_cli("webcam", "--source", clip, "--no-window", "--model", tiny_ckpt, *SIZE_ARG, "--max-frames", "3",
                   "--backend", "openvino", "--stats", "-", env=env)
    assert proc.returncode == 0, proc.stderr
    stats = _stats(proc.stdout)
    assert len(stats) == 3 and {s["backend"] for s in stats} == {"openvino"}


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_cli_fp16_on_a_cpu_runs_its_reduced_precision(backend: str, tiny_ckpt: str, tmp_path: Path,
                                                      cli_cache_home: str) -> None:
    image = tmp_path / "a.png"
    write_image(image)
    proc = run_cli("image", image, "--model", tiny_ckpt, *SIZE_ARG, "--fp16", "--device", "cpu", "--backend", backend,
                   "-o", tmp_path, "--stats", "-", env={"XDG_CACHE_HOME": cli_cache_home})
    assert proc.returncode == 0, proc.stderr
    expected = "bfloat16" if cpu_has_bf16() else "float32"
    (stats,) = _stats(proc.stdout)
    assert (stats["dtype"], stats["backend"]) == (expected, backend)
    notes = [line for line in lines(proc.stderr) if "--fp16" in line]
    assert len(notes) == 1 and ("bf16" if cpu_has_bf16() else "fp32") in notes[0], proc.stderr


# ------------------------------------------------------------------ without openvino
def _run_without_openvino(*args: object, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The CLI in a Python where ``import openvino`` fails, as on a platform with no wheel."""
    code = ("import sys; sys.modules['openvino'] = None; sys.argv[0] = 'depthcli'; "
            "from depthcli.cli.main import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, timeout=120,
                          env=cli_env(env), stdin=subprocess.DEVNULL)
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    return proc


def test_without_openvino_auto_falls_back_and_openvino_is_a_usage_error(tiny_ckpt: str, tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png", seed=1)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "DEPTHCLI_BACKEND": ""}  # auto
    proc = _run_without_openvino("image", tmp_path / "a.png", tmp_path / "b.png", "--model", tiny_ckpt, *SIZE_ARG,
                                 "-o", tmp_path / "out", "--stats", "-", env=env)
    assert proc.returncode == 0, proc.stderr
    assert [s["backend"] for s in _stats(proc.stdout)] == ["torch", "torch"]
    notes = [line for line in lines(proc.stderr) if "openvino" in line and "note" in line]
    assert len(notes) == 1 and "pip install openvino" in notes[0], proc.stderr  # said once per run
    assert not (tmp_path / "cache").exists()
    proc = _run_without_openvino("image", tmp_path / "a.png", "--model", tiny_ckpt, *SIZE_ARG,
                                 "-o", tmp_path / "out2", "--backend", "openvino", env=env)
    assert proc.returncode == 2, proc.stderr
    (line,) = lines(proc.stderr)
    assert "--backend openvino" in line and "pip install openvino" in line
    assert not (tmp_path / "out2").exists()


def test_openvino_is_not_imported_for_help() -> None:
    code = "import sys; from depthcli.cli.main import main; sys.argv[1:] = ['image', '--help']\n" \
           "try:\n    main()\nexcept SystemExit:\n    pass\nassert 'openvino' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, env=cli_env())
    assert proc.returncode == 0, proc.stderr
    assert b"--backend" in proc.stdout


def test_inference_threads_follow_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from depthcli.runtime.threads import inference_threads, physical_cores

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert inference_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert inference_threads() == physical_cores() >= 1
    assert os.cpu_count() is None or physical_cores() <= os.cpu_count()


def test_choose_backend_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    from depthcli.runtime.backends import BackendUnavailable, choose_backend

    monkeypatch.delenv("DEPTHCLI_BACKEND", raising=False)
    cpu, cuda = "cpu", "cuda"
    assert choose_backend(None, cpu) == ("openvino", None)
    assert choose_backend("auto", cuda) == ("torch", None)  # GPUs always run torch
    assert choose_backend("torch", cpu) == ("torch", None)
    assert choose_backend("openvino", cuda, device_was_explicit=False) == ("openvino", None)
    with pytest.raises(BackendUnavailable, match="--device cpu"):
        choose_backend("openvino", cuda, device_was_explicit=True)
    monkeypatch.setenv("DEPTHCLI_BACKEND", "torch")
    assert choose_backend(None, cpu) == ("torch", None)
    assert choose_backend("openvino", cpu) == ("openvino", None)  # the option wins over the variable
    monkeypatch.setenv("DEPTHCLI_BACKEND", "onnx")
    with pytest.raises(BackendUnavailable, match="DEPTHCLI_BACKEND"):
        choose_backend(None, cpu)


def test_a_first_compile_that_fails_falls_back_to_torch_under_auto(tiny_ckpt: str, tmp_path: Path,  # noqa: ANN001
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The first compile runs after the torch model was let go (the first run's peak): when it
    fails, ``auto`` loads the model again and runs torch, with a note; ``--backend openvino`` is a
    model error (exit 3 in the CLI); nothing is remembered for the next run to trust."""
    from depthcli.model.errors import CheckpointError
    from depthcli.runtime import known_weights
    from depthcli.runtime.loading import build_predictor
    from depthcli.runtime.spec import PredictorSpec

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def broken(self) -> float:  # noqa: ANN001
        raise RuntimeError("no kernel for this graph here")

    monkeypatch.setattr(OpenVinoBackend, "prepare_dynamic", broken)
    remembered = []
    monkeypatch.setattr(known_weights, "remember", lambda *a, **k: remembered.append(a))
    predictor = build_predictor(PredictorSpec(model=tiny_ckpt, size=70, backend="auto"))
    assert predictor.backend.name == "torch"
    assert any("openvino could not run this model (RuntimeError)" in n for n in predictor.notes), predictor.notes
    image = np.random.default_rng(2).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert np.isfinite(predictor(image).depth_hw).all()
    with pytest.raises(CheckpointError, match="cannot run on OpenVINO"):
        build_predictor(PredictorSpec(model=tiny_ckpt, size=70, backend="openvino"))
    assert remembered == []
