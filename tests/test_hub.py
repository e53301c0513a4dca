"""Model registry, downloads and ``convert``, against a local stand-in hub (no real network).

huggingface_hub reads HF_ENDPOINT / HF_HOME / HF_HUB_OFFLINE once, at import, so everything
that downloads runs the installed ``depthcli`` (or ``python -c``) in a subprocess whose
environment points at the server in ``hub_server.py`` and at a temporary HF_HOME. The tiny
random-weights model is served under the real repo ids: the server is local, so the names
are free, and the registry needs no test-only override.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from hub_server import COMMIT, HubServer

from depthcli.hub import registry

V2_SMALL = "depth-anything/Depth-Anything-V2-Small-hf"
V2_BASE = "depth-anything/Depth-Anything-V2-Base-hf"  # CC-BY-NC: exercises the licence note
INPUT_SHAPE = (1, 3, 56, 84)
_BIN = Path(sys.executable).parent / "depthcli"
DEPTHCLI = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "depthcli"]


# ----------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def hf_model():  # noqa: ANN201 - DepthAnythingForDepthEstimation
    """The parity tests' tiny V2 (64 wide, 8 blocks, 2 heads), perturbed so its depth has structure."""
    import model_factory  # imports transformers: only the tests that need a model pay for it

    return model_factory.build_hf_model(model_factory.ModelSpec("tiny", 2))


@pytest.fixture(scope="module")
def tiny_repo(hf_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``save_pretrained`` folder: config.json + model.safetensors, as on the hub."""
    folder = tmp_path_factory.mktemp("repo") / "Depth-Anything-V2-Small-hf"
    hf_model.save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    return folder


@pytest.fixture(scope="module")
def hub(tiny_repo: Path) -> Iterator[HubServer]:
    with HubServer({V2_SMALL: tiny_repo, V2_BASE: tiny_repo}) as server:
        yield server


@pytest.fixture
def server(hub: HubServer) -> HubServer:
    hub.reset()
    return hub


@pytest.fixture(scope="module")
def downloaded(hub: HubServer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One real first download of v2-small and v2-base into a fresh HF_HOME, shared by the
    tests that then check what later runs do with that cache."""
    hub.reset()
    hf_home = tmp_path_factory.mktemp("hf")
    result = run(["download", "v2-small", "v2-base"], hub, hf_home)
    return {"hf_home": hf_home, "result": result, "requests": hub.requests}


def run(args: list[str], hub: HubServer, hf_home: Path, *, command: list[str] | None = None,
        **env: str) -> subprocess.CompletedProcess[str]:
    """Run depthcli (or ``command``) with the hub pointed at the local server only."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_", "DEPTHCLI_"))
             and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    clean.update(HF_ENDPOINT=hub.url, HF_HOME=str(hf_home), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1",
                 HF_HUB_DISABLE_TELEMETRY="1", TQDM_POSITION="-1", **env)  # TQDM_POSITION=-1: bars on a pipe
    return subprocess.run((command or DEPTHCLI) + args, env=clean, capture_output=True, text=True,
                          timeout=120)


def repo_cache(hf_home: Path, repo_id: str = V2_SMALL) -> Path:
    return hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("depthcli: error:")]
    assert result.returncode == code, result.stderr
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def depth(model, seed: int = 0) -> torch.Tensor:  # noqa: ANN001 - DepthAnything
    x = torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x)


def load(source: str | Path):  # noqa: ANN201
    import depthcli

    return depthcli.load_model(source, device="cpu")


# ----------------------------------------------------------------------------------- registry
def test_registry_names_repos_and_licences() -> None:
    models = registry.MODELS
    assert len(models) == 22
    assert models["v1-base"].repo_id == "LiheYoung/depth-anything-base-hf"
    assert models["v2-large"].repo_id == "depth-anything/Depth-Anything-V2-Large-hf"
    indoor, outdoor = models["v2-metric-indoor-small"], models["v2-metric-outdoor-large"]
    assert indoor.repo_id == "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf"
    assert (indoor.max_depth, outdoor.max_depth) == (20.0, 80.0)
    assert outdoor.repo_id == "depth-anything/Depth-Anything-V2-Metric-Outdoor-Large-hf"
    assert models["v2-small"].max_depth is None and models["v1-large"].version == 1
    free = {n for n, e in models.items() if e.commercial_use}
    assert free == {"v1-small", "v1-base", "v1-large", "v2-small", "v2-metric-indoor-small",
                    "v2-metric-outdoor-small", "da3-small", "da3-base", "da3mono-large", "da3metric-large",
                    "vda-small", "vda-metric-small"}
    assert all(models[n].licence == "CC-BY-NC-4.0" for n in set(models) - free)
    assert models["da3mono-large"].repo_id == "depth-anything/DA3MONO-LARGE"
    assert models["da3-small"].files == ("config.json", "model.safetensors")
    vda = models["vda-metric-base"]
    assert (vda.repo_id, vda.files) == ("depth-anything/Metric-Video-Depth-Anything-Base",
                                        ("metric_video_depth_anything_vitb.pth",))
    assert {e.family for e in models.values()} == {"depth_anything", "depth_anything_3", "video_depth_anything"}


def test_licence_note_follows_the_weights_by_path(tmp_path: Path) -> None:
    """A non-commercial checkpoint given by path is known by its published name, its Hugging
    Face cache folder, or what `depthcli convert` recorded; an anonymous file says nothing."""
    published = tmp_path / "depth_anything_v2_vitb.pth"
    published.write_bytes(b"weights")
    assert "CC-BY-NC-4.0" in registry.licence_notice(str(published))
    vda = tmp_path / "video_depth_anything_vitl.pth"
    vda.write_bytes(b"weights")
    assert "vda-large" in registry.licence_notice(str(vda))
    cached = tmp_path / "hub" / "models--depth-anything--Depth-Anything-V2-Large-hf" / "snapshots" / "abc"
    cached.mkdir(parents=True)
    assert "v2-large" in registry.licence_notice(str(cached))
    anonymous = tmp_path / "mine.pth"
    anonymous.write_bytes(b"weights")
    assert registry.licence_notice(str(anonymous)) is None
    assert registry.licence_notice(str(tmp_path / "video_depth_anything_vits.pth")) is None  # Apache, and absent


def test_licence_notice_only_for_non_commercial_models() -> None:
    assert registry.licence_notice("v2-small") is None
    assert registry.licence_notice("v1-large") is None
    assert registry.licence_notice("./my.pth") is None
    note = registry.licence_notice("v2-metric-outdoor-base")
    assert note and "CC-BY-NC-4.0" in note and "non-commercial" in note and "\n" not in note


def test_default_model_and_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(registry.MODEL_ENV, raising=False)
    assert registry.default_model_name() == "v2-small"
    monkeypatch.setenv(registry.MODEL_ENV, "v1-base")
    assert registry.default_model_name() == "v1-base"


def test_unknown_name_suggests_close_ones() -> None:
    from depthcli.hub.download import DownloadError
    from depthcli.model import CheckpointError

    with pytest.raises(KeyError, match="v2-small"):
        registry.get_entry("v2-smal")
    with pytest.raises(DownloadError, match="v2-small") as caught:
        from depthcli.hub.download import fetch_model

        fetch_model("v2-smal")
    assert isinstance(caught.value, CheckpointError)  # so the CLI exits with code 3


# ----------------------------------------------------------------------------------- download
def test_first_download_fills_the_hf_cache_with_progress(downloaded: dict, tiny_repo: Path) -> None:
    result, hf_home = downloaded["result"], downloaded["hf_home"]
    assert result.returncode == 0, result.stderr
    snapshot = repo_cache(hf_home) / "snapshots" / COMMIT
    assert result.stdout.splitlines()[0] == str(snapshot)
    for name in ("config.json", "model.safetensors"):
        assert (snapshot / name).read_bytes() == (tiny_repo / name).read_bytes()
    assert "model.safetensors" in result.stderr and "100%" in result.stderr  # the progress bar
    assert result.stderr.count("non-commercial") == 1  # v2-base's licence, once
    fetched = {(r.method, r.path.rsplit("/", 1)[-1]) for r in downloaded["requests"] if "/resolve/" in r.path}
    assert fetched == {(m, f) for m in ("HEAD", "GET") for f in ("config.json", "model.safetensors")}
    assert not list(hf_home.rglob("*.incomplete"))


def test_models_lists_cache_state_without_network(downloaded: dict, server: HubServer) -> None:
    table = run(["models"], server, downloaded["hf_home"])
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line for line in table.stdout.splitlines() if line.startswith("v")}
    assert "yes (" in rows["v2-small"] and rows["v2-large"].rstrip().endswith("no")
    assert "CC-BY-NC-4.0 (non-commercial)" in rows["v2-base"]
    assert "metric 0-80 m" in rows["v2-metric-outdoor-base"]
    listing = run(["models", "--json"], server, downloaded["hf_home"])
    entries = {e["name"]: e for e in json.loads(listing.stdout)}
    small = entries["v2-small"]
    assert small["cached"] and small["default"] and small["cached_mb"] > 0
    assert Path(small["cached_path"]) == repo_cache(downloaded["hf_home"]) / "snapshots" / COMMIT
    assert not entries["v1-small"]["cached"] and entries["v1-small"]["cached_path"] is None
    assert server.requests == []


def test_models_names_the_default_that_depthcli_model_chooses(downloaded: dict, server: HubServer) -> None:
    """#25 item 15: with $DEPTHCLI_MODEL a checkpoint path no row can be starred; the line under
    the table names it (and a registry name there is starred)."""
    for value, starred, line in (
            ("/models/mine.pth", None,
             "default: /models/mine.pth (from $DEPTHCLI_MODEL; a checkpoint, not one of the models above)"),
            ("v2-base", "v2-base", "* default, from $DEPTHCLI_MODEL"),
            (None, "v2-small", "* default (set $DEPTHCLI_MODEL to change)")):
        env = {"DEPTHCLI_MODEL": value} if value else {}
        table = run(["models"], server, downloaded["hf_home"], **env)
        assert table.returncode == 0, table.stderr
        stars = [row.split()[0] for row in table.stdout.splitlines() if row.startswith("v") and " * " in row]
        assert stars == ([starred] if starred else []), table.stdout
        assert table.stdout.splitlines()[-1].startswith(f"{line}. Cache: "), table.stdout
    assert server.requests == []


def test_every_command_says_a_non_commercial_licence_once(downloaded: dict, server: HubServer,
                                                          tmp_path: Path) -> None:
    """v2-base (CC-BY-NC) from the cache: image, video and webcam each say its licence once."""
    from cli_helpers import SIZE_ARG, write_image, write_video

    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png", seed=1)
    clip = write_video(tmp_path / "clip.mp4", n=3)
    common = ["--model", "v2-base", *SIZE_ARG, "--device", "cpu"]
    for args in (["image", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "i")],
                 ["video", str(clip), "-o", str(tmp_path / "v")],
                 ["webcam", "--source", str(clip), "--no-window", "--max-frames", "2"]):
        result = run([*args, *common], server, downloaded["hf_home"], HF_HUB_OFFLINE="1", DEPTHCLI_BACKEND="torch")
        assert result.returncode == 0, result.stderr
        notes = [line for line in result.stderr.splitlines() if "non-commercial" in line]
        assert len(notes) == 1 and notes[0].startswith("depthcli: note: v2-base") and "CC-BY-NC-4.0" in notes[0], \
            (args[0], result.stderr)
    assert server.requests == []


def test_cached_model_needs_no_request_even_offline(downloaded: dict, server: HubServer) -> None:
    again = run(["download", "v2-small"], server, downloaded["hf_home"])
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == downloaded["result"].stdout.splitlines()[0]
    assert "already cached" in again.stderr
    offline = run(["download", "v2-small"], server, downloaded["hf_home"], HF_HUB_OFFLINE="1")
    assert offline.returncode == 0, offline.stderr
    assert server.requests == []


def test_load_model_by_name_downloads_and_matches(server: HubServer, tiny_repo: Path, tmp_path: Path) -> None:
    """The Python API: ``depthcli.load_model("v2-small")`` fetches on first use."""
    out = tmp_path / "depth.pt"
    code = ("import sys, torch, depthcli; m = depthcli.load_model('v2-small', device='cpu'); "
            f"x = torch.randn({INPUT_SHAPE}, generator=torch.Generator().manual_seed(0)); "
            "torch.save((m.config.version, m(x).detach()), sys.argv[1])")
    result = run([code, str(out)], server, tmp_path / "hf", command=[sys.executable, "-c"])
    assert result.returncode == 0, result.stderr
    version, got = torch.load(out)
    assert version == 2
    assert torch.equal(got, depth(load(tiny_repo)))
    assert any(r.path.endswith("/model.safetensors") for r in server.requests)


def test_image_without_model_fetches_the_default_once(server: HubServer, tmp_path: Path) -> None:
    """What a new user types: no --model, no cache. The default model (v2-small) is downloaded
    once, then the next run works from the cache with no request at all."""
    import cv2
    import numpy as np

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8))
    hf_home = tmp_path / "hf"
    first = run(["image", str(photo), "--size", "70", "-f", "npy"], server, hf_home)
    assert first.returncode == 0, first.stderr
    assert np.load(tmp_path / "photo_depth.npy").shape == (60, 80)
    assert any(r.path.endswith("/model.safetensors") for r in server.requests)
    server.reset("normal")
    again = run(["image", str(photo), "--size", "70", "-o", str(tmp_path / "again")], server, hf_home)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again" / "photo_depth.png").is_file()
    assert server.requests == []


def test_missing_repo_is_exit_3_with_one_line(server: HubServer, tmp_path: Path) -> None:
    server.reset("404")
    result = run(["download", "v2-small"], server, tmp_path / "hf")
    assert_one_line_error(result, 3, "not found", V2_SMALL)


def test_offline_without_cache_says_how_to_get_the_model(server: HubServer, tmp_path: Path) -> None:
    result = run(["download", "v2-small"], server, tmp_path / "hf", HF_HUB_OFFLINE="1")
    assert_one_line_error(result, 3, "depthcli download v2-small", "--model PATH")
    assert server.requests == []


def test_dropped_connection_leaves_no_partial_file_and_retry_works(server: HubServer, tmp_path: Path,
                                                                   tiny_repo: Path) -> None:
    hf_home = tmp_path / "hf"
    server.reset("drop")
    failed = run(["download", "v2-small"], server, hf_home)
    assert_one_line_error(failed, 3, "interrupted", "model.safetensors")
    assert server.dropped
    cache = repo_cache(hf_home)
    assert not list(cache.rglob("*.incomplete"))
    assert not list(cache.glob("snapshots/*/model.safetensors"))
    full = (tiny_repo / "model.safetensors").stat().st_size
    assert all(b.stat().st_size != full // 2 for b in cache.glob("blobs/*"))

    server.reset("normal")
    retry = run(["download", "--no-progress", "v2-small"], server, hf_home)
    assert retry.returncode == 0, retry.stderr
    assert "100%" not in retry.stderr
    weights = Path(retry.stdout.strip()) / "model.safetensors"
    assert weights.read_bytes() == (tiny_repo / "model.safetensors").read_bytes()


def test_unknown_name_is_a_usage_error(server: HubServer, tmp_path: Path) -> None:
    result = run(["download", "v3-huge"], server, tmp_path / "hf")
    assert result.returncode == 2
    assert "v2-small" in result.stderr  # click lists the valid names
    assert server.requests == []


# ----------------------------------------------------------------------------------- convert
def convert(*args: str):  # noqa: ANN201 - click Result
    from depthcli.cli.main import main

    return CliRunner().invoke(main, ["convert", *map(str, args)])


def test_convert_keeps_the_output_of_a_transformers_folder_and_an_original_pth(hf_model, tiny_repo: Path,
                                                                               tmp_path: Path) -> None:
    import model_factory

    pth = model_factory.save_original_pth(hf_model, tmp_path / "depth_anything_v2_vits.pth")
    for i, src in enumerate((tiny_repo, pth)):
        dst = tmp_path / f"out{i}.safetensors"
        result = convert(src, dst)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == str(dst)
        model = load(dst)
        assert model.config.version == 2 and not model.config.metric
        assert (depth(model) - depth(load(src))).abs().max() <= 1e-6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["depth_anything_v2_vits.pth", "out0.safetensors",
                                                           "out1.safetensors"]  # no temp files left


def test_convert_writes_with_the_mode_of_every_other_output(tiny_repo: Path, tmp_path: Path) -> None:
    """#25 item 17: safetensors creates its files 0600; convert's output gets what any new file
    gets here (0644 under the usual umask), and its message says the layout in plain words."""
    import os

    old = os.umask(0o022)
    try:
        result = convert(tiny_repo, tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o644
    assert "from a checkpoint in the transformers layout" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_convert_depthcli_file_round_trips(tiny_repo: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert convert(tiny_repo, first).exit_code == 0
    assert convert(first, second).exit_code == 0
    assert torch.equal(depth(load(first)), depth(load(second)))


def test_convert_refuses_to_overwrite_without_force(tiny_repo: Path, tmp_path: Path) -> None:
    dst = tmp_path / "model.safetensors"
    dst.write_bytes(b"precious")
    refused = convert(tiny_repo, dst)
    assert refused.exit_code == 2 and "--force" in refused.output
    assert dst.read_bytes() == b"precious"
    forced = convert(tiny_repo, dst, "--force")
    assert forced.exit_code == 0, forced.output
    assert load(dst).config.version == 2
    bad = convert(tiny_repo, tmp_path / "model.pth")
    assert bad.exit_code == 2 and ".safetensors" in bad.output


def test_convert_a_registry_name_uses_the_cache(downloaded: dict, server: HubServer, tiny_repo: Path,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process: huggingface_hub reads these constants at call time; offline as a safety net."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(downloaded["hf_home"] / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    dst = tmp_path / "v2-small.safetensors"
    result = convert("v2-small", dst)
    assert result.exit_code == 0, result.output
    assert torch.equal(depth(load(dst)), depth(load(tiny_repo)))
    assert server.requests == []


def test_licence_note_follows_a_published_checkpoint_through_convert(tiny_model, tmp_path: Path) -> None:  # noqa: ANN001
    """`-m depth_anything_v2_vitb.pth` says the CC-BY-NC note; so does the file `depthcli convert`
    makes of it (the identity is in its metadata), whatever it is renamed to."""
    from cli_helpers import run_cli, write_image

    published = tmp_path / "depth_anything_v2_vitb.pth"
    published.write_bytes(tiny_model.unnamed_pth.read_bytes())
    write_image(tmp_path / "a.png")
    proc = run_cli("image", tmp_path / "a.png", "--model", published, "--size", "70", "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert sum("CC-BY-NC-4.0" in line for line in proc.stderr.splitlines()) == 1, proc.stderr
    converted = tmp_path / "renamed.safetensors"
    proc = run_cli("convert", published, converted)
    assert proc.returncode == 0 and "CC-BY-NC-4.0" in proc.stderr, proc.stderr
    proc = run_cli("image", tmp_path / "a.png", "--model", converted, "--size", "70", "-o", tmp_path / "out2")
    assert proc.returncode == 0 and "v2-base" in proc.stderr and "non-commercial" in proc.stderr, proc.stderr
