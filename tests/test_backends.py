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

from depthcli.runtime.backends import openvino_backend  # noqa: E402
from depthcli.runtime.backends.openvino_backend import OpenVinoBackend  # noqa: E402
from depthcli.runtime.backends.openvino_cache import ModelCache, entry_key  # noqa: E402
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
    return {name: OpenVinoBackend(m, precision="fp32", threads=1, cache=ov_cache) for name, m in models.items()}


def _ov_depth(backend: OpenVinoBackend, x: torch.Tensor) -> torch.Tensor:
    return backend.run(backend.to_input(x))


# ------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("name", [str(s) for s in SPECS])
def test_openvino_matches_torch_on_every_size(name: str, models, backends) -> None:  # noqa: ANN001
    model, backend = models[name], backends[name]
    assert backend.dtype == torch.float32  # f32 asked for explicitly, even on a bf16 CPU
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
        got = DepthPredictor(models[name], size=70, backend=backends[name])(image)
        assert got.depth_hw.shape == ref.depth_hw.shape == (45, 80)
        assert got.depth_hw.dtype == np.float32
        assert max_rel_error(torch.from_numpy(got.depth_hw), torch.from_numpy(ref.depth_hw)) <= PARITY_TOL
        assert (got.stats.backend, got.stats.dtype, ref.stats.backend) == ("openvino", "float32", "torch")
        assert got.stats.line().endswith("openvino cpu fp32")


def test_bf16_runs_and_stays_close(models, backends, ov_cache: ModelCache) -> None:  # noqa: ANN001
    """bf16 is compiled from the same cached graph (no second conversion)."""
    assert backends["tiny-v2"] is not None  # the session fixture converted and stored it
    backend = OpenVinoBackend(models["tiny-v2"], precision="bf16", threads=1, cache=ov_cache)
    assert not backend.notes  # a cache hit: the f32 graph serves both precisions
    assert backend.dtype == (torch.bfloat16 if cpu_has_bf16() else torch.float32)
    x = sample_image(3, 70, 98)
    with torch.inference_mode():
        expected = models["tiny-v2"](x)
    assert max_rel_error(_ov_depth(backend, x), expected) < 5e-2
    # the dtype said before anything was compiled is the one the plugin chose
    ran = backend._current.compiled.get_property("INFERENCE_PRECISION_HINT")
    assert openvino_backend.TORCH_DTYPE[getattr(ran, "get_type_name", lambda: str(ran))()] == backend.dtype


def test_public_predict_keeps_torch_by_default_and_takes_a_backend(models, backends, ov_cache: ModelCache,  # noqa: ANN001
                                                                    ov_cache_home: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import depthcli

    monkeypatch.setenv("XDG_CACHE_HOME", str(ov_cache_home))  # the fixture's entries: no conversion here
    monkeypatch.setattr(openvino_backend, "convert", _no_conversion)
    entries = sorted(ov_cache.root.iterdir())
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    image = np.random.default_rng(1).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    model = models["tiny-v2"]
    default = depthcli.predict(model, image, size=70)
    assert np.array_equal(default, DepthPredictor(model, size=70)(image).depth_hw)
    ov = depthcli.predict(model, image, size=70, backend="openvino")
    assert max_rel_error(torch.from_numpy(ov), torch.from_numpy(default)) <= PARITY_TOL
    again = depthcli.predict(model, image, size=70, backend="openvino")  # the same backend again
    assert max_rel_error(torch.from_numpy(again), torch.from_numpy(default)) <= PARITY_TOL
    assert sorted(ov_cache.root.iterdir()) == entries


# -------------------------------------------------------------------------------- cache
def _no_conversion(_model):  # noqa: ANN001, ANN202
    raise AssertionError("converted again despite a cached entry")


def _reuse_conversion(monkeypatch: pytest.MonkeyPatch, backend: OpenVinoBackend) -> None:
    """Let ``convert`` hand back the graph a session backend already converted from the same
    model: what it would compute, without paying seconds for it again."""
    monkeypatch.setattr(openvino_backend, "convert", lambda _model: (backend.graph(), 0.0))


def test_cache_hit_does_not_convert(models, backends, ov_cache: ModelCache,  # noqa: ANN001
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert backends["tiny-v2"] is not None  # the session fixture converted and stored it
    monkeypatch.setattr(openvino_backend, "convert", _no_conversion)
    again = OpenVinoBackend(models["tiny-v2"], precision="fp32", threads=1, cache=ov_cache)
    assert again.notes == []
    x = sample_image(5, 84, 56)
    for _ in range(2):  # the second call: both run a model compiled for exactly this shape
        mine, theirs = _ov_depth(again, x), _ov_depth(backends["tiny-v2"], x)
    assert max_rel_error(mine, theirs) == 0


def test_compiles_for_the_first_shape_and_switches_as_documented(models, backends, ov_cache: ModelCache,  # noqa: ANN001
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache hit compiles nothing until an input comes; that input gets a model compiled for
    its own shape; another size switches to the dynamic model; a size that repeats gets its own
    again. The graph is not held between compiles: each one reads it back from the cache."""
    assert backends["tiny-v2"] is not None  # the session fixture converted and stored it
    monkeypatch.setattr(openvino_backend, "convert", _no_conversion)
    backend = OpenVinoBackend(models["tiny-v2"], precision="fp32", threads=1, cache=ov_cache)
    assert backend._current is None
    reads = []
    real_read = openvino_backend.read_graph
    monkeypatch.setattr(openvino_backend, "read_graph", lambda xml: reads.append(xml) or real_read(xml))
    a, b = sample_image(11, 70, 98), sample_image(12, 56, 84)
    shapes = []
    for x in (a, a, b, b, b, a):
        with torch.inference_mode():
            expected = models["tiny-v2"](x)
        assert max_rel_error(_ov_depth(backend, x), expected) <= PARITY_TOL
        shapes.append(backend._current.shape)
    assert shapes == [tuple(a.shape), tuple(a.shape), None, tuple(b.shape), tuple(b.shape), None]
    assert backend._graph is None  # dropped after the first compile
    assert len(reads) == 3  # the dynamic model, b's own, the dynamic model again


def test_a_cache_entry_removed_while_running_is_a_clear_error(models, backends, tmp_path: Path,  # noqa: ANN001
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    cache = ModelCache(tmp_path)
    key, material = entry_key("4" * 64, models["tiny-v1"])
    cache.store(key, backends["tiny-v1"].graph(), material)
    monkeypatch.setattr(openvino_backend, "convert", _no_conversion)
    backend = OpenVinoBackend(models["tiny-v1"], precision="fp32", threads=1, cache=cache, weights_sha256="4" * 64)
    _ov_depth(backend, sample_image(13, 70, 70))  # compiled from the graph read at start-up
    shutil.rmtree(cache.entry(key))
    from depthcli.model import CheckpointError

    with pytest.raises(CheckpointError, match="removed or changed while depthcli ran"):
        _ov_depth(backend, sample_image(14, 56, 56))


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps (Linux)")
def test_the_predictor_lets_go_of_the_mapped_checkpoint(tiny_ckpt: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenVINO holds its own weights, so the checkpoint file torch mapped is unmapped: on the
    first use (the converted graph shares torch's memory, so the stored copy is compiled) and on
    a cache hit (the kept position table gets its own memory: a view would pin the mapping)."""
    from depthcli.runtime.loading import build_predictor
    from depthcli.runtime.spec import PredictorSpec

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    image = np.random.default_rng(2).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for first_use in (True, False):
        predictor = build_predictor(PredictorSpec(model=tiny_ckpt, device="cpu", backend="openvino", size=70))
        assert predictor.backend_name == "openvino"
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
    elif how == "flipped byte in bin":  # same size: only the checksum can tell
        data = bytearray((entry / "model.bin").read_bytes())
        data[len(data) // 3] ^= 0xFF
        (entry / "model.bin").write_bytes(bytes(data))
    elif how == "garbage xml":
        (entry / "model.xml").write_text("<net><layers>not a model")
    elif how == "no meta":
        (entry / "meta.json").unlink()
    elif how == "empty meta":
        (entry / "meta.json").write_text("")
    else:
        raise ValueError(how)


@pytest.mark.parametrize("how", ["truncated bin", "flipped byte in bin", "garbage xml", "no meta", "empty meta"])
def test_broken_entry_is_refused_and_removed(how: str, models, backends, tmp_path: Path) -> None:  # noqa: ANN001
    model = models["tiny-v1"]
    ov_model = backends["tiny-v1"].graph()
    cache = ModelCache(tmp_path)
    key, material = entry_key("0" * 64, model)
    entry = cache.store(key, ov_model, material)
    loaded, problem = cache.load(key)
    assert loaded is not None and problem is None
    _corrupt(entry, how)
    loaded, problem = cache.load(key)
    assert loaded is None and problem, how
    assert not entry.exists() and not list(cache.root.iterdir())  # moved aside and deleted


def test_broken_entry_is_rebuilt_by_the_backend(models, backends, tmp_path: Path,  # noqa: ANN001
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _reuse_conversion(monkeypatch, backends["tiny-v2"])
    cache = ModelCache(tmp_path)
    first = OpenVinoBackend(models["tiny-v2"], precision="fp32", threads=1, cache=cache, weights_sha256="1" * 64)
    assert "converted" in first.notes[0]
    (entry,) = cache.root.iterdir()
    _corrupt(entry, "flipped byte in bin")
    second = OpenVinoBackend(models["tiny-v2"], precision="fp32", threads=1, cache=cache, weights_sha256="1" * 64)
    assert "broken" in second.notes[0] and "rebuilt" in second.notes[0], second.notes
    x = sample_image(9, 70, 70)
    with torch.inference_mode():
        expected = models["tiny-v2"](x)
    assert max_rel_error(_ov_depth(second, x), expected) <= PARITY_TOL
    assert cache.load(entry.name)[0] is not None  # the rebuilt entry is valid


def test_second_store_of_the_same_entry_keeps_the_first(models, backends, tmp_path: Path) -> None:  # noqa: ANN001
    """What the losing process of a conversion race does: its rename fails, the entry stays."""
    model = models["tiny-v1"]
    ov_model = backends["tiny-v1"].graph()
    cache = ModelCache(tmp_path)
    key, material = entry_key("2" * 64, model)
    entry = cache.store(key, ov_model, material)
    meta = (entry / "meta.json").read_text()
    assert cache.store(key, ov_model, material) == entry
    assert (entry / "meta.json").read_text() == meta
    assert [p.name for p in cache.root.iterdir()] == [key]  # no temporary folder left


def test_unwritable_cache_still_runs(models, backends, tmp_path: Path,  # noqa: ANN001
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _reuse_conversion(monkeypatch, backends["tiny-v2"])
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    backend = OpenVinoBackend(models["tiny-v2"], precision="fp32", threads=1, cache=ModelCache(blocker),
                              weights_sha256="3" * 64)
    assert "cannot cache" in backend.notes[0]
    x = sample_image(4, 56, 70)
    with torch.inference_mode():
        expected = models["tiny-v2"](x)
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
    assert np.array_equal(a, b)
    root = tmp_path / "cache" / "depthcli" / "openvino"
    entries = list(root.iterdir())
    assert len(entries) == 1 and not entries[0].name.startswith("."), entries
    assert ModelCache(tmp_path / "cache" / "depthcli").load(entries[0].name)[0] is not None


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
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
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
