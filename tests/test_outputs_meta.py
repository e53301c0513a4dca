"""Outputs that explain themselves: the metadata in every output, EXR and PLY, ``depthcli info``.

End to end through the installed ``depthcli`` with tiny random models (a relative one and a
metric one with the same shape) at ``--size 70``. The checks read the files back the way a user
would (OpenCV for PNG, the ``openexr`` package for EXR, a PLY parsed with numpy here) and tie
every format to the raw ``npy`` depth of the same image: gray16 recovers it within one
quantisation step with the recorded formula, EXR is identical, and PLY vertices project back
onto the pixels they came from with the depth as z.
"""
from __future__ import annotations

import hashlib
import json
import math
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_helpers import SIZE_ARG, jpeg_with_focal_35mm, lines, run_cli, temp_leftovers, write_image, write_video

H, W = 48, 64
META_FIELDS = {"depthcli", "model", "sha256", "version", "encoder", "kind", "precision", "backend", "device",
               "input_hw", "network_hw"}
QUANTISED_FIELDS = {"min", "max", "invert", "formula"}
VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])


# ----------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def metric_ckpt(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random METRIC model (hypersim-style, 20 m), the CLI tiny model's shape."""
    from model_factory import ModelSpec, Shape, build_hf_model, save_transformers_dir

    from depthcli.model import build_model, read_checkpoint, save_safetensors

    shape = Shape(hidden=64, layers=4, heads=2, neck=(8, 16, 32, 64), fusion=32)

    @dataclass(frozen=True)
    class MetricSpec(ModelSpec):
        @property
        def shape(self) -> Shape:
            return shape

    directory = tmp_path_factory.mktemp("metric-model")
    hf = build_hf_model(MetricSpec("cli-tiny-metric", 2, metric=True))
    net = build_model(read_checkpoint(save_transformers_dir(hf, directory / "hf"), version=2))
    assert net.config.metric and net.config.max_depth == 20.0
    path = directory / "tiny-metric.safetensors"
    save_safetensors(net, path)
    return str(path)


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "a.png"
    write_image(path, H, W)
    return path


# The torch backend: what is tested here does not depend on the backend, and OpenVINO would
# convert each tiny model first (seconds on a busy machine). The metadata must say which ran.
TORCH = {"DEPTHCLI_BACKEND": "torch"}


def image(*args: object, **kwargs: object) -> subprocess.CompletedProcess:
    return run_cli("image", *args, env=TORCH, **kwargs)


def assert_ok(proc: subprocess.CompletedProcess, code: int = 0) -> None:
    assert proc.returncode == code, f"exit {proc.returncode}, stderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr


def info_json(path: Path) -> dict:
    proc = run_cli("info", "--json", path)
    assert_ok(proc)
    return json.loads(proc.stdout)


def png_text(data: bytes) -> dict[str, str]:
    """tEXt chunks of a PNG, parsed here independently of depthcli."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    texts, pos = {}, 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"tEXt":
            key, _, text = body.partition(b"\0")
            texts[key.decode("latin-1")] = text.decode("latin-1")
        pos += 12 + length
    return texts


def read_ply(data: bytes) -> tuple[list[str], np.ndarray]:
    """(header lines, vertices) of a binary little-endian PLY, parsed here independently."""
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[:2] == ["ply", "format binary_little_endian 1.0"], header
    count = int(next(line for line in header if line.startswith("element vertex")).split()[2])
    props = [line.split()[1:] for line in header if line.startswith("property")]
    assert props == [["float", "x"], ["float", "y"], ["float", "z"], ["uchar", "red"], ["uchar", "green"],
                     ["uchar", "blue"]]
    assert len(data) - end == count * VERTEX.itemsize
    return header, np.frombuffer(data[end:], VERTEX)


def ply_meta(header: list[str]) -> dict:
    (comment,) = [line for line in header if line.startswith("comment depthcli ")]
    return json.loads(comment[len("comment depthcli "):])


def read_exr(path: Path) -> tuple[np.ndarray, dict]:
    import OpenEXR

    f = OpenEXR.File(str(path), separate_channels=True)
    channels = f.channels()
    assert list(channels) == ["Z"]
    return np.asarray(channels["Z"].pixels), json.loads(f.header()["depthcli"])


# ----------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("invert", [False, True], ids=["plain", "invert"])
def test_gray16_formula_recovers_the_raw_depth_within_one_step(tmp_path: Path, photo: Path, tiny_ckpt: str,
                                                                 invert: bool) -> None:
    flags = ["--invert"] if invert else []
    for fmt in ("gray16", "gray", "npy"):  # --invert applies to PNGs only (refused with npy)
        assert_ok(image(photo, "-f", fmt, "-o", tmp_path / fmt, "-m", tiny_ckpt, *SIZE_ARG, "-q",
                        *(flags if fmt != "npy" else [])))
    raw = np.load(tmp_path / "npy" / "a_depth.npy")
    for fmt, levels in (("gray16", 65535), ("gray", 255)):
        path = tmp_path / fmt / "a_depth.png"
        meta = json.loads(png_text(path.read_bytes())["depthcli"])
        assert meta == info_json(path)
        assert META_FIELDS | QUANTISED_FIELDS <= set(meta)
        assert meta["kind"] == "relative inverse depth" and meta["invert"] is invert
        assert meta["levels"] == levels and meta["format"] == fmt
        assert meta["input_hw"] == [H, W] and meta["network_hw"] == [70, 98]
        assert (meta["min"], meta["max"]) == (float(raw.min()), float(raw.max()))
        p = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float64)
        lo, hi = meta["min"], meta["max"]
        # the recorded formula, as documented in docs/formats.md
        expected = (f"value = max - (max - min) * p / {levels}" if invert
                    else f"value = min + (max - min) * p / {levels}")
        assert meta["formula"] == expected
        value = hi - (hi - lo) * p / levels if invert else lo + (hi - lo) * p / levels
        step = (hi - lo) / levels
        float32_slack = 4 * np.finfo(np.float32).eps * max(abs(lo), abs(hi))  # normalised in float32
        error = raw - value
        if fmt == "gray16":  # rounded: within half a step (the issue asks for one)
            assert np.abs(error).max() <= 0.5 * step + float32_slack
        else:  # truncated: the raw value is at most one step above
            assert error.min() >= -float32_slack and error.max() <= step + float32_slack
        assert np.abs(error).max() > 0  # a real quantisation, not a copy


def test_exr_is_the_npy_depth_with_metadata(tmp_path: Path, photo: Path, metric_ckpt: str) -> None:
    for fmt in ("exr", "npy"):
        assert_ok(image(photo, "-f", fmt, "-o", tmp_path, "-m", metric_ckpt, *SIZE_ARG, "-q"))
    depth, meta = read_exr(tmp_path / "a_depth.exr")
    raw = np.load(tmp_path / "a_depth.npy")
    assert depth.dtype == np.float32 and depth.shape == (H, W)
    np.testing.assert_array_equal(depth, raw)
    assert raw.max() > raw.min() > 0  # metres, with structure
    assert meta["kind"] == "metric depth, metres" and meta["max_depth"] == 20.0
    assert meta["format"] == "exr" and META_FIELDS <= set(meta)
    assert meta == info_json(tmp_path / "a_depth.exr")


def test_ply_vertices_reproject_onto_the_depth_map(tmp_path: Path, photo: Path, metric_ckpt: str) -> None:
    focal = 50.0
    assert_ok(image(photo, "-f", "npy", "-o", tmp_path, "-m", metric_ckpt, *SIZE_ARG, "-q"))
    assert_ok(image(photo, "-f", "ply", "-o", tmp_path, "-m", metric_ckpt, *SIZE_ARG, "-q", "--focal", focal))
    header, v = read_ply((tmp_path / "a_depth.ply").read_bytes())
    meta = ply_meta(header)
    assert meta == info_json(tmp_path / "a_depth.ply")
    cam = meta["camera"]
    assert (cam["fx"], cam["fy"], cam["cx"], cam["cy"]) == (focal, focal, W / 2, H / 2)
    assert cam["source"].startswith("--focal")
    raw = np.load(tmp_path / "a_depth.npy")
    assert len(v) == int((np.isfinite(raw) & (raw > 0)).sum()) == H * W  # metric: all positive
    z = v["z"].astype(np.float64)
    col = v["x"] * focal / z + W / 2 - 0.5
    row = v["y"] * focal / z + H / 2 - 0.5
    cols, rows = np.rint(col).astype(int), np.rint(row).astype(int)
    assert np.abs(col - cols).max() < 1e-3 and np.abs(row - rows).max() < 1e-3
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == H * W  # each pixel once
    np.testing.assert_allclose(z, raw[rows, cols], rtol=1e-6)
    bgr = cv2.imread(str(photo))
    np.testing.assert_array_equal(np.stack([v["blue"], v["green"], v["red"]], -1), bgr[rows, cols])


def test_relative_model_needs_an_explicit_conversion_for_ply(tmp_path: Path, photo: Path, tiny_ckpt: str,
                                                             metric_ckpt: str) -> None:
    proc = image(photo, "-f", "ply", "-o", tmp_path / "out", "-m", tiny_ckpt, *SIZE_ARG)
    assert_ok(proc, code=2)
    error = [line for line in lines(proc.stderr) if line.startswith("Error:")]
    assert len(error) == 1 and "relative model" in error[0] and "--depth-scale" in error[0], proc.stderr
    assert not (tmp_path / "out").exists()
    # with a conversion: z = 1 / (scale * d + shift), pixels where that is not > 0 dropped
    assert_ok(image(photo, "-f", "npy", "-o", tmp_path, "-m", tiny_ckpt, *SIZE_ARG, "-q"))
    d = np.load(tmp_path / "a_depth.npy").astype(np.float64)
    scale = 2.0
    shift = round(-scale * float(np.median(d)), 4)  # the farther half gets 1 / (negative): dropped
    assert_ok(image(photo, "-f", "ply", "-o", tmp_path, "-m", tiny_ckpt, *SIZE_ARG, "-q",
                    "--depth-scale", scale, "--depth-shift", shift, "--fov", 90))
    header, v = read_ply((tmp_path / "a_depth.ply").read_bytes())
    meta = ply_meta(header)
    assert (meta["depth_scale"], meta["depth_shift"]) == (scale, shift)
    assert meta["kind"] == "relative inverse depth" and "1 / (scale * d + shift)" in meta["z"]
    assert meta["camera"]["fx"] == pytest.approx(W / 2)  # 90 degrees: f = half the width
    expected = 1.0 / (scale * d + shift)
    keep = np.isfinite(expected) & (expected > 0)
    assert 0 < keep.sum() < H * W  # the shift really drops some pixels
    np.testing.assert_allclose(np.sort(v["z"]), np.sort(expected[keep]).astype(np.float32), rtol=1e-5)
    # metric models refuse a conversion they do not need; ply-only options need ply
    refused = tmp_path / "refused"
    for args in (["-o", refused, "-m", metric_ckpt, "-f", "ply", "--depth-scale", "1"],
                 ["-o", refused, "-m", tiny_ckpt, "--focal", "100"],
                 ["-o", refused, "-m", tiny_ckpt, "--fov", "60", "--focal", "100", "-f", "ply", "--depth-scale", "1"],
                 ["-o", "-", "-m", tiny_ckpt, "--meta"]):
        proc = image(photo, *args, *SIZE_ARG)
        assert_ok(proc, code=2)
        assert proc.stdout == b"" and not refused.exists()


def test_exif_focal_length_sets_the_camera(tmp_path: Path, metric_ckpt: str) -> None:
    img = write_image(tmp_path / "src.png", H, W)
    (tmp_path / "phone.jpg").write_bytes(jpeg_with_focal_35mm(img, 26))
    (tmp_path / "plain.jpg").write_bytes(cv2.imencode(".jpg", img)[1].tobytes())
    assert_ok(image(tmp_path / "phone.jpg", tmp_path / "plain.jpg", "-f", "ply", "-o", tmp_path / "out",
                    "-m", metric_ckpt, *SIZE_ARG, "-q", "--meta"))
    phone = json.loads((tmp_path / "out" / "phone_depth.json").read_text())["camera"]
    assert phone["fx"] == pytest.approx(26 / math.hypot(36, 24) * math.hypot(W, H))
    assert phone["source"].startswith("EXIF FocalLengthIn35mmFilm 26 mm")
    plain = json.loads((tmp_path / "out" / "plain_depth.json").read_text())["camera"]
    assert plain["fx"] == pytest.approx(W / 2 / math.tan(math.radians(30)))  # the 60 degree default
    assert plain["source"].startswith("default: 60 deg")
    # the sidecar is the embedded metadata
    header, _ = read_ply((tmp_path / "out" / "phone_depth.ply").read_bytes())
    assert ply_meta(header)["camera"] == phone
    # --fov wins over EXIF
    assert_ok(image(tmp_path / "phone.jpg", "-f", "ply", "-o", tmp_path / "fov", "-m", metric_ckpt, *SIZE_ARG,
                    "-q", "--fov", 90))
    assert info_json(tmp_path / "fov" / "phone_depth.ply")["camera"]["fx"] == pytest.approx(W / 2)


# ----------------------------------------------------------------------------------- every output
@pytest.mark.parametrize("fmt", ["color", "gray", "gray16", "exr", "ply"])
def test_metadata_through_stdout_names_the_exact_weights(tmp_path: Path, photo: Path, metric_ckpt: str,
                                                         fmt: str) -> None:
    proc = image("-", "-o", "-", "-f", fmt, "-m", metric_ckpt, *SIZE_ARG, "-q", input=photo.read_bytes())
    assert_ok(proc)
    data = proc.stdout
    if fmt == "exr":
        (tmp_path / "x.exr").write_bytes(data)
        depth, meta = read_exr(tmp_path / "x.exr")
        assert depth.shape == (H, W)
    elif fmt == "ply":
        header, v = read_ply(data)
        meta = ply_meta(header)
        assert len(v) == H * W
    else:
        meta = json.loads(png_text(data)["depthcli"])
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2] == (H, W)
        assert QUANTISED_FIELDS <= set(meta)
        assert meta.get("colormap") == ("inferno" if fmt == "color" else None)
    assert META_FIELDS <= set(meta)
    assert meta["sha256"] == hashlib.sha256(Path(metric_ckpt).read_bytes()).hexdigest()
    assert meta["model"] == "tiny-metric.safetensors" and meta["version"] == 2
    assert meta["kind"] == "metric depth, metres" and meta["input"] == "-" and meta["format"] == fmt
    assert meta["input_hw"] == [H, W] and meta["network_hw"] == [70, 98]
    assert (meta["backend"], meta["device"], meta["precision"]) == ("torch", "cpu", "float32")
    from depthcli import __version__

    assert meta["depthcli"] == __version__


def test_meta_sidecar_beside_every_output_and_info(tmp_path: Path, photo: Path, tiny_ckpt: str) -> None:
    for fmt in ("npy", "gray16"):
        assert_ok(image(photo, "-f", fmt, "-o", tmp_path / fmt, "-m", tiny_ckpt, *SIZE_ARG, "-q", "--meta"))
    assert sorted(p.name for p in (tmp_path / "npy").iterdir()) == ["a_depth.json", "a_depth.npy"]
    side = json.loads((tmp_path / "npy" / "a_depth.json").read_text())
    assert META_FIELDS <= set(side) and side["format"] == "npy" and side["formula"] == "value = pixel"
    assert info_json(tmp_path / "npy" / "a_depth.npy") == side == info_json(tmp_path / "npy" / "a_depth.json")
    embedded = json.loads(png_text((tmp_path / "gray16" / "a_depth.png").read_bytes())["depthcli"])
    assert json.loads((tmp_path / "gray16" / "a_depth.json").read_text()) == embedded
    readable = run_cli("info", tmp_path / "gray16" / "a_depth.png")
    assert_ok(readable)
    shown = readable.stdout.decode()
    assert shown.startswith(f"{tmp_path / 'gray16' / 'a_depth.png'} (PNG)\n")
    assert "value = min + (max - min) * p / 65535" in shown and "relative inverse depth" in shown
    assert f"sha256          {side['sha256']}" in shown and "input_hw        64x48 (WxH)" in shown
    # without --meta: no sidecar
    assert_ok(image(photo, "-f", "npy", "-o", tmp_path / "plain", "-m", tiny_ckpt, *SIZE_ARG, "-q"))
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["a_depth.npy"]


def test_info_on_bad_and_foreign_files(tmp_path: Path, photo: Path, metric_ckpt: str) -> None:
    for fmt in ("exr", "ply"):
        assert_ok(image(photo, "-f", fmt, "-o", tmp_path, "-m", metric_ckpt, *SIZE_ARG, "-q"))
    exr, ply = (tmp_path / "a_depth.exr").read_bytes(), (tmp_path / "a_depth.ply").read_bytes()
    cases = {
        "half.exr": exr[: len(exr) // 2],
        "header.exr": exr[:40],
        "short.ply": ply[:-15],
        "noheader.ply": ply[:100],
        "random.bin": np.random.default_rng(0).bytes(3000),
        "empty.png": b"",
        "foreign.png": cv2.imencode(".png", cv2.imread(str(photo)))[1].tobytes(),
        "cut.png": (cv2.imencode(".png", cv2.imread(str(photo)))[1].tobytes())[:200],
        "other.json": b'{"a": 1}',
        "raw.npy": b"\x93NUMPY\x01\x00" + b" " * 100,  # no sidecar beside it
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    for name in [*cases, "missing.png", "."]:
        proc = run_cli("info", tmp_path / name)
        assert_ok(proc, code=1)
        assert len(lines(proc.stderr)) == 1 and lines(proc.stderr)[0].startswith("depthcli: "), (name, proc.stderr)
        assert proc.stdout == b""
    # a good file among bad ones is still shown; the exit code says something failed
    proc = run_cli("info", tmp_path / "a_depth.exr", tmp_path / "half.exr")
    assert_ok(proc, code=1)
    assert b"metric depth, metres" in proc.stdout


def test_failed_writes_leave_no_partial_output(tmp_path: Path, photo: Path, metric_ckpt: str) -> None:
    (tmp_path / "blocker").write_text("a file, not a folder")
    (tmp_path / "out" / "a_depth.json").mkdir(parents=True)  # the sidecar's name is taken by a folder
    for fmt, out in (("exr", tmp_path / "blocker" / "sub"), ("ply", tmp_path / "blocker" / "sub")):
        proc = image(photo, "-f", fmt, "-o", out, "-m", metric_ckpt, *SIZE_ARG, "-q")
        assert_ok(proc, code=1)
        assert lines(proc.stderr)[-1].startswith(f"depthcli: {photo}: cannot create directory"), proc.stderr
    proc = image(photo, "-f", "ply", "-o", tmp_path / "out", "-m", metric_ckpt, *SIZE_ARG, "-q", "--meta")
    assert_ok(proc, code=1)
    assert "cannot write" in proc.stderr and "a_depth.json" in proc.stderr
    assert temp_leftovers(tmp_path) == []
    header, _ = read_ply((tmp_path / "out" / "a_depth.ply").read_bytes())  # the output itself is complete
    assert ply_meta(header)["format"] == "ply"


# ----------------------------------------------------------------------------------- video
def test_video_records_its_metadata_once_and_per_frame(tmp_path: Path, tiny_ckpt: str) -> None:
    clip = write_video(tmp_path / "clip.mp4", n=4, size=(W, H))
    assert_ok(run_cli("video", clip, "-o", tmp_path / "exr", "--frames", "exr", "-m", tiny_ckpt, *SIZE_ARG,
                      "-q", env=TORCH))
    assert_ok(run_cli("video", clip, "-o", tmp_path / "g16", "--frames", "gray16", "--no-video",
                      "-m", tiny_ckpt, *SIZE_ARG, "-q", env=TORCH))
    side = json.loads((tmp_path / "exr" / "clip_depth.json").read_text())
    assert META_FIELDS <= set(side) and side["format"] == "video" and side["input_hw"] == [H, W]
    video = side["video"]
    assert video["file"] == "clip_depth.mp4" and video["normalize"] == "running"
    rows = video["frame_ranges"]["rows"]
    assert [r[0] for r in rows] == [0, 1, 2, 3] and all(r[1] < r[2] for r in rows)
    assert side["frames"]["format"] == "exr"
    assert info_json(tmp_path / "exr" / "clip_depth.mp4") == side  # the video's sidecar
    g16_side = json.loads((tmp_path / "g16" / "clip_depth.json").read_text())
    assert "video" not in g16_side and g16_side["frames"]["format"] == "gray16"
    for i in range(4):
        depth, meta = read_exr(tmp_path / "exr" / "clip_depth_frames" / f"clip_{i:06d}.exr")
        assert meta["frame"] == i and meta["formula"] == "value = pixel" and depth.shape == (H, W)
        png = tmp_path / "g16" / "clip_depth_frames" / f"clip_{i:06d}.png"
        fmeta = json.loads(png_text(png.read_bytes())["depthcli"])
        assert fmeta["frame"] == i and (fmeta["min"], fmeta["max"]) == (float(depth.min()), float(depth.max()))
        p = cv2.imread(str(png), cv2.IMREAD_UNCHANGED).astype(np.float64)
        lo, hi = fmeta["min"], fmeta["max"]
        slack = 4 * np.finfo(np.float32).eps * max(abs(lo), abs(hi))
        assert np.abs(lo + (hi - lo) * p / 65535 - depth).max() <= 0.5 * (hi - lo) / 65535 + slack


def test_info_on_a_video_frame_npy_points_to_the_video_sidecar(tmp_path: Path, tiny_ckpt: str) -> None:
    """#25 item 11: `depthcli video` has no --meta; a --frames .npy is described by the video's
    clip_depth.json, and a lone .npy's hint names the command that has --meta."""
    clip = write_video(tmp_path / "clip.mp4", n=3, size=(W, H))
    assert_ok(run_cli("video", clip, "-o", tmp_path / "out", "--frames", "npy", "--no-video", "-m", tiny_ckpt,
                      *SIZE_ARG, "-q", env=TORCH))
    frame = tmp_path / "out" / "clip_depth_frames" / "clip_000001.npy"
    proc = run_cli("info", frame)
    assert_ok(proc)
    assert proc.stdout.decode().startswith(f"{frame} (NPY (a video frame; metadata from ../clip_depth.json))\n")
    assert info_json(frame) == json.loads((tmp_path / "out" / "clip_depth.json").read_text())
    (tmp_path / "out" / "clip_depth.json").unlink()
    proc = run_cli("info", frame)
    assert_ok(proc, code=1)
    assert lines(proc.stderr) == [f"depthcli: {frame}: a video's --frames .npy carries no metadata; it is in "
                                  f"{tmp_path / 'out' / 'clip_depth.json'}, which is not there"], proc.stderr
    lone = tmp_path / "lone.npy"
    np.save(lone, np.zeros((2, 2), np.float32))
    proc = run_cli("info", lone)
    assert_ok(proc, code=1)
    assert "(`depthcli image --meta` writes one)" in proc.stderr, proc.stderr


def test_webcam_snapshot_records_its_metadata(tmp_path: Path, tiny_ckpt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The `s` key's snapshot (driven here without a window): the coloured depth PNG carries the
    metadata that reads it back, and the raw npy gets its json, as `depthcli image` writes them."""
    from depthcli.cli.webcam import _Session
    from depthcli.io.video.camera import open_source
    from depthcli.jobs.metadata import model_facts
    from depthcli.runtime.loading import build_predictor
    from depthcli.runtime.spec import PredictorSpec

    monkeypatch.setenv("DEPTHCLI_BACKEND", "torch")
    clip = write_video(tmp_path / "clip.mp4", n=3, size=(W, H))
    spec = PredictorSpec(model=tiny_ckpt, device="cpu", size=70)
    predictor = build_predictor(spec)
    session = _Session(predictor, open_source(source=str(clip)), window=None, colormap="viridis", normalize="frame",
                       record_path=None, snapshot_dir=tmp_path / "snaps", quiet=True, stats_path=None, live=False,
                       facts=model_facts(predictor, spec))
    session.run(max_frames=2)
    session._snapshot()
    session.finish()
    (png,) = (tmp_path / "snaps").glob("*_depth.png")
    stem = png.name.removesuffix("_depth.png")
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == sorted(
        f"{stem}{end}" for end in ("_input.png", "_depth.png", "_depth.npy", "_depth.json"))
    meta = json.loads(png_text(png.read_bytes())["depthcli"])
    assert META_FIELDS <= set(meta) and meta["colormap"] == "viridis" and meta["input"] == f"{stem}_input.png"
    depth = np.load(tmp_path / "snaps" / f"{stem}_depth.npy")
    assert (meta["min"], meta["max"]) == (float(depth.min()), float(depth.max())) and meta["input_hw"] == [H, W]
    assert info_json(tmp_path / "snaps" / f"{stem}_depth.npy")["formula"] == "value = pixel"
