"""Depth Anything 3 through the installed ``depthcli``, end to end, against the ORIGINAL pipeline
(``shared/parity/check_da3.py``'s contract, the original code from the parity snapshot through
``da3_reference.py``; skipped without it): InputProcessor(size, "upper_bound_resize") -> the
network (its sky fill included) -> ``* f_net / 300`` for DA3METRIC -> bilinear,
``align_corners=True``, to the photo's size.

Models, seeded and perturbed as the parity harness does:
- ``tiny-da3-small``: DA3-SMALL/BASE's architecture (alternating attention, RoPE, QK-norm, camera
  token, DualDPT) 64 wide; ``tiny-da3mono`` / ``tiny-da3metric``: DA3MONO/METRIC's (plain DINOv2,
  DPT with the sky branch; the same weights), sky calibrated to about a quarter of the square
  photo. The Hub layout only admits the published presets (its config.json names one; other
  tensors are refused, exit 3: tested below), so the tiny networks travel in depthcli's own
  ``.safetensors`` (``save_safetensors``: the whole config in the metadata);
- ``DA3-SMALL``: the real preset (ViT-S), written as its Hub folder (config.json +
  model.safetensors saved the Hub-mixin way), run at tiny inputs.

Covered: ``image -f npy`` on both backends for square, wide and portrait photos (enlarged and
shrunk), with and without sky filled; metric metres from ``--fov``, ``--focal``, EXIF and the 60
degree default; ``-f ply``; ``info`` on a gray16 output; colour pictures near-bright; a config.json
naming an unknown preset and tensors not fitting the named one (exit 3, one line); ``video``
with a DA3 model; ``serve`` (same npy as ``image``, the unit header); the Python API.

Every ``depthcli`` run gets its test's own ``$XDG_CACHE_HOME`` (OpenVINO conversions, the
known-weights records). Run with ``-s`` to see the measured errors.
"""
from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from cli_helpers import (
    jpeg_with_focal_35mm,
    lines,
    run_cli,
    temp_leftovers,
    video_info,
    write_image,
    write_video,
)
from da3_reference import (
    RealPresets,
    network_input,
    original_da3,
    original_pipeline,
    save_hub_folder,
    tiny_pair,
)

TOL = 1e-4  # check_da3.py's bar (max|a-b| / max|b|)
SIZE = 56  # --size: the longer network-input side
PHOTOS = {"square": (40, 40, 1), "wide": (48, 120, 2), "portrait": (90, 42, 4)}  # name: (h, w, seed)
FOCAL_PX = 47.5  # --focal
BACKENDS = ["torch", pytest.param("openvino", marks=pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="openvino is not installed"))]
RELATIVE_MODELS = ["tiny-da3-small", "tiny-da3mono", "DA3-SMALL"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny networks: see conftest


@dataclass
class DA3Setup:
    root: Path
    photos: dict[str, Path]
    paths: dict[str, Path]  # model label -> what --model is given
    nets: dict[str, torch.nn.Module]  # model label -> the original network (the reference)

    def photo_bgr(self, name: str) -> np.ndarray:
        return cv2.imread(str(self.photos[name]), cv2.IMREAD_COLOR)


@pytest.fixture(scope="module")
def da3(tmp_path_factory: pytest.TempPathFactory) -> DA3Setup:
    from depthcli.model import save_safetensors

    original_da3()  # skips the module without the original code
    root = tmp_path_factory.mktemp("da3-cli")
    photos = {}
    for name, (h, w, seed) in PHOTOS.items():
        photos[name] = root / f"{name}.png"
        write_image(photos[name], h, w, seed=seed)
    calibration = network_input(cv2.imread(str(photos["square"])), SIZE)
    nets, paths = {}, {}
    net, ours = tiny_pair("alternating", 100, calibration)
    nets["tiny-da3-small"], paths["tiny-da3-small"] = net, root / "tiny-da3-small.safetensors"
    save_safetensors(ours, paths["tiny-da3-small"])
    net, ours = tiny_pair("sky", 101, calibration)
    nets["tiny-da3mono"], paths["tiny-da3mono"] = net, root / "tiny-da3mono.safetensors"
    save_safetensors(ours, paths["tiny-da3mono"])
    _, metric = tiny_pair("sky", 101, calibration, metric=True)  # the same network, metres out
    nets["tiny-da3metric"], paths["tiny-da3metric"] = net, root / "tiny-da3metric.safetensors"
    save_safetensors(metric, paths["tiny-da3metric"])
    nets["DA3-SMALL"], paths["DA3-SMALL"] = RealPresets(root / "hub").get("da3-small")
    return DA3Setup(root, photos, paths, nets)


def own_cache(tmp_path: Path) -> dict[str, str]:
    """This test's own $XDG_CACHE_HOME: no conversion or record shared with another test."""
    return {"XDG_CACHE_HOME": str(tmp_path / "xdg-cache")}


def assert_ok(proc, code: int = 0) -> None:  # noqa: ANN001
    assert proc.returncode == code, f"exit {proc.returncode}, stderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr


def rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    assert actual.shape == expected.shape, f"shape {actual.shape}, the original's {expected.shape}"
    assert actual.dtype == np.float32
    return float(np.abs(actual.astype(np.float64) - expected).max() / np.abs(expected).max())


def image_npy(da3: DA3Setup, tmp_path: Path, model: str, backend: str, *extra: object, out: str = "out",
              photos: dict[str, Path] | None = None) -> dict[str, np.ndarray]:
    """``depthcli image <every photo> --model M --size 56 -f npy -o OUT --backend B EXTRA``: one
    process for all photos (one conversion on OpenVINO); the npy of each photo, by its stem."""
    photos = photos or da3.photos
    proc = run_cli("image", *photos.values(), "--model", da3.paths[model], "--size", SIZE, "-f", "npy",
                   "-o", tmp_path / out, "--backend", backend, *extra, env=own_cache(tmp_path), timeout=300)
    assert_ok(proc)
    assert f"{backend} cpu fp32" in proc.stderr, proc.stderr  # what ran it, no fallback
    assert temp_leftovers(tmp_path / out) == []
    return {name: np.load(tmp_path / out / f"{path.stem}_depth.npy") for name, path in photos.items()}


# ----------------------------------------------------------------------------------- 1. exact depth
@pytest.mark.parametrize("model", RELATIVE_MODELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_image_npy_equals_the_original_pipeline(da3: DA3Setup, tmp_path: Path, backend: str, model: str) -> None:
    depth = image_npy(da3, tmp_path, model, backend)
    filled = {}
    for name in da3.photos:
        ref = original_pipeline(da3.nets[model], da3.photo_bgr(name), SIZE)
        err = rel_err(depth[name], ref.depth_hw)
        filled[name] = ref.sky_filled
        sky = "" if ref.sky_pixels is None else f", sky {ref.sky_pixels}/{np.prod(ref.network_hw)} px"
        print(f"\nda3 cli {model} {backend} {name} {PHOTOS[name][:2]} -> net {ref.network_hw}{sky}: "
              f"max rel err {err:.1e}")
        assert err <= TOL, f"{name}: {err:.2e}"
    if model == "tiny-da3mono":  # the sky fill both applied and not
        assert any(filled.values()) and not all(filled.values()), filled
    if backend == "openvino" and model == "DA3-SMALL":  # again, from the cache (a Hub folder's record)
        again = image_npy(da3, tmp_path, model, backend, out="again")
        # equal to float rounding: a run starting with the shape an earlier run started with
        # runs its static compiled model, the first ran the dynamic one
        assert all(rel_err(again[name], depth[name]) <= 1e-5 for name in da3.photos)


@pytest.mark.parametrize("backend", BACKENDS)
def test_metric_metres_from_fov_focal_exif_and_the_default(da3: DA3Setup, tmp_path: Path, backend: str) -> None:
    """DA3METRIC: metres = output * f_net / 300, the photo's focal length from --fov, --focal, the
    photo's EXIF (a JPEG with a 26 mm equivalent focal length) or, for the PNGs (no EXIF), a 60
    degree horizontal field of view. The first run converts (OpenVINO), the others reuse it."""
    from depthcli.io.images import read_image

    photos = dict(da3.photos)
    photos["exif"] = tmp_path / "phone.jpg"
    photos["exif"].write_bytes(jpeg_with_focal_35mm(da3.photo_bgr("wide"), 26))

    def fov_60(name: str, w: int, h: int) -> float:
        return w / 2 / math.tan(math.radians(30))

    def exif_or_60(name: str, w: int, h: int) -> float:  # the 35 mm equivalent over the frame's diagonal
        return 26 / math.hypot(36, 24) * math.hypot(w, h) if name == "exif" else fov_60(name, w, h)

    cases = {"--fov 60": (("--fov", "60"), fov_60, da3.photos),
             f"--focal {FOCAL_PX}": (("--focal", FOCAL_PX), lambda *_: FOCAL_PX, da3.photos),
             "exif, else the default": ((), exif_or_60, photos)}
    for i, (label, (args, focal, inputs)) in enumerate(cases.items()):
        depth = image_npy(da3, tmp_path, "tiny-da3metric", backend, *args, out=f"out{i}", photos=inputs)
        for name, path in inputs.items():
            photo = read_image(path)  # as depthcli decodes it (the JPEG too)
            h, w = photo.shape[:2]
            ref = original_pipeline(da3.nets["tiny-da3metric"], photo, SIZE, focal_px=focal(name, w, h))
            err = rel_err(depth[name], ref.depth_hw)
            print(f"\nda3 cli metric {backend} {label} {name}: metres {ref.depth_hw.min():.2f}.."
                  f"{ref.depth_hw.max():.2f}, max rel err {err:.1e}")
            assert err <= TOL, f"{label} {name}: {err:.2e}"


# ----------------------------------------------------------------------------------- 2. other outputs
def test_ply_from_the_metric_model(da3: DA3Setup, tmp_path: Path) -> None:
    from depthcli.io.formats.ply import VERTEX, read_ply_header

    proc = run_cli("image", da3.photos["wide"], "--model", da3.paths["tiny-da3metric"], "--size", SIZE, "-f", "ply",
                   "--fov", "60", "-o", tmp_path / "out", env=own_cache(tmp_path))
    assert_ok(proc)
    path = tmp_path / "out" / "wide_depth.ply"
    header = read_ply_header(path)
    photo = da3.photo_bgr("wide")
    h, w = photo.shape[:2]
    f = w / 2 / math.tan(math.radians(30))
    ref = original_pipeline(da3.nets["tiny-da3metric"], photo, SIZE, focal_px=f).depth_hw
    assert header.vertex_count == h * w  # every pixel: metric depth is positive
    v = np.frombuffer(path.read_bytes(), VERTEX, count=header.vertex_count, offset=header.data_offset)
    z = v["z"].reshape(h, w)
    err = rel_err(z, ref)
    print(f"\nda3 cli ply: {header.vertex_count} points, z max rel err {err:.1e}")
    assert err <= TOL
    cols = np.arange(w)[None, :]
    rows = np.arange(h)[:, None]
    np.testing.assert_allclose(v["x"].reshape(h, w), (cols + 0.5 - w / 2) * z / f, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v["y"].reshape(h, w), (rows + 0.5 - h / 2) * z / f, rtol=1e-5, atol=1e-6)
    assert header.meta["kind"] == "metric depth, metres" and header.meta["camera"]["fx"] == pytest.approx(f)


def test_gray16_info_says_relative_depth_near_bright(da3: DA3Setup, tmp_path: Path) -> None:
    proc = run_cli("image", da3.photos["square"], "--model", da3.paths["tiny-da3-small"], "--size", SIZE,
                   "-f", "gray16", "-o", tmp_path / "out", env=own_cache(tmp_path))
    assert_ok(proc)
    png = tmp_path / "out" / "square_depth.png"
    info = run_cli("info", "--json", png, env=own_cache(tmp_path))
    assert_ok(info)
    meta = json.loads(info.stdout)
    assert meta["kind"] == "relative depth" and "inverse" not in meta["kind"]
    assert meta["family"] == "depth_anything_3" and meta["invert"] is True  # larger = farther: drawn reversed
    # read back as the metadata says: value = max - (max - min) * p / 65535
    ref = original_pipeline(da3.nets["tiny-da3-small"], da3.photo_bgr("square"), SIZE).depth_hw
    p = cv2.imread(str(png), cv2.IMREAD_UNCHANGED).astype(np.float64)
    back = meta["max"] - (meta["max"] - meta["min"]) * p / 65535
    step = (meta["max"] - meta["min"]) / 65535
    assert np.abs(back - ref).max() <= step + TOL * np.abs(ref).max()
    assert p.flat[np.argmin(ref)] == 65535 and p.flat[np.argmax(ref)] == 0  # nearest brightest


def test_colour_png_shows_near_bright(da3: DA3Setup, tmp_path: Path) -> None:
    """The colour PNG is the colormap of the REVERSED depth ordering (DA3's values grow with
    distance): the nearest pixel gets the colormap's top (inferno's bright yellow)."""
    from depthcli.io.render import normalize

    proc = run_cli("image", da3.photos["portrait"], "--model", da3.paths["tiny-da3-small"], "--size", SIZE,
                   "-f", "color", "-o", tmp_path / "out", env=own_cache(tmp_path))
    assert_ok(proc)
    picture = cv2.imread(str(tmp_path / "out" / "portrait_depth.png"), cv2.IMREAD_COLOR)
    ref = original_pipeline(da3.nets["tiny-da3-small"], da3.photo_bgr("portrait"), SIZE).depth_hw
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_INFERNO)[:, 0]
    brightest, darkest = lut[255], lut[0]
    assert cv2.cvtColor(lut[None], cv2.COLOR_BGR2GRAY)[0, 255] > cv2.cvtColor(lut[None], cv2.COLOR_BGR2GRAY)[0, 0]
    h, w = ref.shape
    near, far = np.unravel_index(np.argmin(ref), ref.shape), np.unravel_index(np.argmax(ref), ref.shape)
    assert (picture[near] == brightest).all() and (picture[far] == darkest).all()
    expected = cv2.applyColorMap(255 - (normalize(ref.astype(np.float32)) * 255.0).astype(np.uint8),
                                 cv2.COLORMAP_INFERNO)
    same = (picture == expected).all(axis=2).mean()
    assert same >= 0.98, f"{same:.1%} of the pixels as the reversed colormap of the original's depth"


# ----------------------------------------------------------------------------------- 3. bad models
def test_config_naming_an_unknown_preset_or_misfitting_tensors(da3: DA3Setup, tmp_path: Path) -> None:
    """Hub folders whose config.json names no supported preset, or a preset the tensors (the tiny
    da3-small architecture's) do not fit: exit 3 and one line naming the problem."""
    wrapper = torch.nn.Module()
    wrapper.model = da3.nets["tiny-da3-small"]  # the DepthAnything3 wrapper's keys: model.*
    cases = {"da3-giant": "not a supported Depth Anything 3 preset", "da3-small": "tensors do not fit da3-small"}
    for name, fragment in cases.items():
        folder = save_hub_folder(wrapper, tmp_path / f"DA3-{name}", name)
        proc = run_cli("image", da3.photos["square"], "--model", folder, "--size", SIZE, "-f", "npy",
                       "-o", tmp_path / "out", env=own_cache(tmp_path))
        assert_ok(proc, code=3)
        err = lines(proc.stderr)
        assert len(err) == 1 and fragment in err[0] and err[0].startswith("depthcli: "), err
        print(f"\nda3 cli {name} config: {err[0]}")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------- 4. other doors
def test_video_with_a_da3_model(da3: DA3Setup, tmp_path: Path) -> None:
    """A per-frame model in ``depthcli video``: every frame its own depth (the Hub folder)."""
    from depthcli.io.video.opencv import open_video

    clip = write_video(tmp_path / "clip.mp4", n=6, size=(64, 48))
    proc = run_cli("video", clip, "--model", da3.paths["DA3-SMALL"], "--size", SIZE, "--frames", "npy",
                   "-o", tmp_path / "out", "--backend", "torch", env=own_cache(tmp_path))
    assert_ok(proc)
    out = tmp_path / "out"
    info = video_info(out / "clip_depth.mp4")
    assert (info.frames, info.width, info.height) == (6, 64, 48)
    reader = open_video(clip)  # the frames as depthcli decoded them
    frames = [frame for _, frame in reader]
    reader.close()
    worst = 0.0
    for i, frame in enumerate(frames):
        ref = original_pipeline(da3.nets["DA3-SMALL"], frame, SIZE).depth_hw
        worst = max(worst, rel_err(np.load(out / "clip_depth_frames" / f"clip_{i:06d}.npy"), ref))
    print(f"\nda3 cli video: 6 frames, max rel err {worst:.1e}")
    assert len(frames) == 6 and worst <= TOL
    meta = json.loads((out / "clip_depth.json").read_text())
    assert meta["kind"] == "relative depth" and "temporal" not in meta
    assert temp_leftovers(tmp_path) == []


def test_serve_returns_what_image_writes(da3: DA3Setup, tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    from serve_helpers import post_image, running

    photo = da3.photos["wide"]
    opts = ("--size", str(SIZE), "--backend", "torch")
    proc = run_cli("image", photo, "--model", da3.paths["DA3-SMALL"], *opts, "-f", "npy", "-o", tmp_path / "out",
                   env=own_cache(tmp_path))
    assert_ok(proc)
    with running(tmp_path, str(da3.paths["DA3-SMALL"]), env=own_cache(tmp_path), model_opts=opts) as server:
        assert server.host == "127.0.0.1"
        reply = post_image(server, photo.read_bytes(), "format=npy")
    assert reply.status == 200, reply
    assert reply.headers["x-depthcli-unit"] == "relative depth"
    assert reply.body == (tmp_path / "out" / "wide_depth.npy").read_bytes()


# ----------------------------------------------------------------------------------- 5. the API
def test_python_api_equals_the_cli(da3: DA3Setup, tmp_path: Path) -> None:
    import depthcli

    cli = image_npy(da3, tmp_path, "DA3-SMALL", "torch", out="rel")
    model = depthcli.load_model(da3.paths["DA3-SMALL"], device="cpu")
    for name, photo in da3.photos.items():
        api = depthcli.predict(model, photo, size=SIZE)
        err = rel_err(api, cli[name])
        print(f"\nda3 api DA3-SMALL {name}: max rel err vs the cli {err:.1e}")
        assert np.array_equal(api, cli[name])  # the same code on the same thread count: the same bits
    cli = image_npy(da3, tmp_path, "tiny-da3metric", "torch", "--focal", FOCAL_PX, out="metric")
    model = depthcli.load_model(da3.paths["tiny-da3metric"], device="cpu")
    for name, photo in da3.photos.items():
        api = depthcli.predict(model, cv2.imread(str(photo)), size=SIZE, focal_px=FOCAL_PX)
        err = rel_err(api, cli[name])
        print(f"\nda3 api metric {name} focal_px={FOCAL_PX}: max rel err vs the cli {err:.1e}")
        assert np.array_equal(api, cli[name])
