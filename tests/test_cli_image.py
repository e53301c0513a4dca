"""``depthcli image`` end to end: the installed entry point in a subprocess, as a user runs it,
with a tiny random checkpoint and ``--size 70`` so each image takes milliseconds.

Covered: every input form (file, folder, -r, quoted glob, stdin, --list), every format, the
rendering options, batch failures, resuming, stats, exit codes, and the raw depth against both
``depthcli.predict`` and an independent re-implementation of the original pre/postprocessing.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_helpers import PATCH, SIZE, SIZE_ARG, lines, run_cli, temp_leftovers, write_image

STATS_KEYS = {"name", "input_hw", "processed_hw", "infer_ms", "peak_mem_mb", "device", "dtype"}
SUMMARY = re.compile(r"^(?P<n>\d+) images?(?:, (?P<failed>\d+) failed)?: median \d+ ms/image inference, "
                     r"[\d.]+ images/s end to end, peak (?:RSS|VRAM) \d+ MiB, "
                     r"(?:torch|openvino) \w+ \w+$")


@pytest.fixture
def model_args(tiny_ckpt: str) -> list[str]:
    return ["--model", tiny_ckpt, *SIZE_ARG]


def expected_processed_hw(h: int, w: int, size: int = SIZE) -> tuple[int, int]:
    """The originals' lower-bound resize: the shorter side reaches ``size``, both sides rounded
    to multiples of 14 (half to even, as np.round), never below ``size``."""
    scale = max(size / h, size / w)

    def fit(x: float) -> int:
        y = int(np.round(x / PATCH) * PATCH)
        return y if y >= size else int(math.ceil(x / PATCH) * PATCH)

    return fit(scale * h), fit(scale * w)


def image_line(label: str, h: int, w: int, dest: str | None = None) -> re.Pattern[str]:
    ph, pw = expected_processed_hw(h, w)
    tail = rf" -> {re.escape(dest)}" if dest else ""
    return re.compile(rf"^{re.escape(label)}: {w}x{h} -> {pw}x{ph}, \d+ ms \(total \d+ ms\), "
                      rf"peak (?:RSS|VRAM) \d+ MiB, (?:torch|openvino) \w+ \w+{tail}$")


def image(*args: object, **kwargs: object) -> subprocess.CompletedProcess:
    return run_cli("image", *args, **kwargs)


def read_png(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, f"{path} is not a readable PNG"
    return img


def read_stats(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_ok(proc: subprocess.CompletedProcess, code: int = 0) -> None:
    assert proc.returncode == code, f"exit {proc.returncode}, stderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------------- top level
def test_version_and_help_are_fast_and_do_not_import_torch() -> None:
    from depthcli import __version__

    for args in (["--version"], ["--help"]):
        t0 = time.perf_counter()
        proc = run_cli(*args)
        elapsed = time.perf_counter() - t0
        assert_ok(proc)
        assert elapsed < 2.0, f"depthcli {args[0]} took {elapsed:.2f} s"
        if args == ["--version"]:
            assert proc.stdout.decode() == f"depthcli, version {__version__}\n"
        else:
            help_text = proc.stdout.decode()
            for command in ("image", "video", "webcam"):
                assert re.search(rf"^\s+{command}\s", help_text, re.M), help_text
            assert "130 interrupted" in help_text
    for argv in (["--version"], ["--help"]):
        code = f"import sys; from depthcli.cli.main import main; sys.argv = {['depthcli', *argv]!r}; main()"
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        modules = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                   if line.startswith("import time:")}
        assert "click" in modules  # the report was parsed
        heavy = sorted(m for m in modules if m.split(".")[0] in ("torch", "transformers", "safetensors"))
        assert not heavy, f"depthcli {argv[0]} imports {heavy[:5]}"


# ----------------------------------------------------------------------------------- single file
def test_single_file_output_beside_it_and_formats(tmp_path: Path, model_args: list[str]) -> None:
    """One image through color (default, beside the input), gray, inverted gray, gray16 and a
    turbo side-by-side; the renderings must agree with each other exactly."""
    img = write_image(tmp_path / "a.png", 48, 64, seed=0)
    proc = image("a.png", *model_args, cwd=tmp_path)
    assert_ok(proc)
    assert proc.stdout == b""
    color = read_png(tmp_path / "a_depth.png")
    assert color.shape == (48, 64, 3) and color.dtype == np.uint8
    assert len(np.unique(color.reshape(-1, 3), axis=0)) > 50, "flat depth picture"
    err = lines(proc.stderr)
    assert image_line("a.png", 48, 64, "a_depth.png").match(err[0]), err
    assert SUMMARY.match(err[-1]) and SUMMARY.match(err[-1])["n"] == "1", err
    assert len(err) == 2, err

    variants = {"g": ["-f", "gray"], "gi": ["-f", "gray", "--invert"], "g16": ["-f", "gray16"],
                "sbs": ["--side-by-side", "--colormap", "turbo"]}
    for out, args in variants.items():
        assert_ok(image("a.png", *args, "-o", out, *model_args, cwd=tmp_path))
    gray, inverted = read_png(tmp_path / "g/a_depth.png"), read_png(tmp_path / "gi/a_depth.png")
    gray16, sbs = read_png(tmp_path / "g16/a_depth.png"), read_png(tmp_path / "sbs/a_depth.png")

    assert gray.shape == (48, 64) and gray.dtype == np.uint8
    assert gray.min() == 0 and gray.max() == 255  # min-max normalised
    assert inverted.shape == (48, 64) and inverted.dtype == np.uint8
    assert (gray.astype(int) + inverted.astype(int) == 255).all()
    assert gray16.shape == (48, 64) and gray16.dtype == np.uint16
    assert gray16.min() == 0 and gray16.max() == 65535
    assert np.abs(gray16 / 257.0 - gray).max() <= 1.0  # the same map, 256x finer
    assert len(np.unique(gray16)) > len(np.unique(gray))
    assert np.array_equal(color, cv2.applyColorMap(gray, cv2.COLORMAP_INFERNO))

    assert sbs.shape == (48, 128, 3) and sbs.dtype == np.uint8
    assert np.array_equal(sbs[:, :64], img), "left half is not the input"
    turbo = sbs[:, 64:]
    assert np.array_equal(turbo, cv2.applyColorMap(gray, cv2.COLORMAP_TURBO))
    assert np.abs(turbo.astype(int) - color).mean() > 20, "turbo looks like inferno"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_depth.png", "g", "g16", "gi", "sbs"]


def test_stdin_to_stdout(tmp_path: Path, model_args: list[str]) -> None:
    write_image(tmp_path / "a.png", 48, 64, seed=0)
    data = (tmp_path / "a.png").read_bytes()
    proc = image("-", "-o", "-", *model_args, input=data, cwd=tmp_path)
    assert_ok(proc)
    assert proc.stdout.startswith(b"\x89PNG\r\n\x1a\n")
    decoded = cv2.imdecode(np.frombuffer(proc.stdout, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded is not None and decoded.shape == (48, 64, 3) and decoded.dtype == np.uint8
    assert image_line("<stdin>", 48, 64).match(lines(proc.stderr)[0]), proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # nothing written to disk


# ----------------------------------------------------------------------------------- many inputs
@pytest.fixture
def tree(tmp_path: Path) -> dict[str, tuple[int, int]]:
    """tree/ with images at three levels, plus files a folder scan must skip; returns the
    images a recursive scan finds, relative path -> (h, w)."""
    found = {"top.png": (48, 64), "wide.jpg": (60, 100), "sub/a.png": (50, 40), "sub/deeper/b.bmp": (42, 56)}
    for i, (rel, (h, w)) in enumerate(found.items()):
        write_image(tmp_path / "tree" / rel, h, w, seed=i)
    write_image(tmp_path / "tree/.hidden.png")
    write_image(tmp_path / "tree/sub/.cache/c.png")
    (tmp_path / "tree/notes.txt").write_text("not an image")
    return found


def test_recursive_folder_mirrored_under_output_with_stats(tmp_path: Path, tree: dict,
                                                           model_args: list[str]) -> None:
    proc = image("tree", "-r", "-o", "out", "-f", "gray", "--stats", "stats.jsonl", *model_args,
                 cwd=tmp_path)
    assert_ok(proc)
    expected = {rel: f"{rel.rsplit('.', 1)[0]}_depth.png" for rel in tree}
    assert files_under(tmp_path / "out") == set(expected.values())
    for rel, (h, w) in tree.items():
        out = read_png(tmp_path / "out" / expected[rel])
        assert out.shape == (h, w) and out.dtype == np.uint8, rel

    stats = read_stats(tmp_path / "stats.jsonl")
    assert [s["name"] for s in stats] == [f"tree/{rel}" for rel in sorted(tree)]  # sorted walk
    for s in stats:
        assert STATS_KEYS <= set(s), s
        h, w = tree[s["name"].removeprefix("tree/")]
        assert s["input_hw"] == [h, w]
        assert tuple(s["processed_hw"]) == expected_processed_hw(h, w)
        assert all(v % PATCH == 0 for v in s["processed_hw"]) and min(s["processed_hw"]) == SIZE
        assert 0 < s["infer_ms"] < 60_000
        assert 10 < s["peak_mem_mb"] < 100_000
        assert (s["device"], s["dtype"]) == ("cpu", "float32")

    err = lines(proc.stderr)
    assert len(err) == len(tree) + 1, err
    for line, rel in zip(err, sorted(tree), strict=False):  # + summary
        h, w = tree[rel]
        assert image_line(f"tree/{rel}", h, w, f"out/{expected[rel]}").match(line), line
    assert SUMMARY.match(err[-1])["n"] == "4", err[-1]


def test_folder_without_r_takes_top_level_only_gray16(tmp_path: Path, tree: dict,
                                                      model_args: list[str]) -> None:
    assert_ok(image("tree", "-o", "out", "-f", "gray16", *model_args, cwd=tmp_path))
    assert files_under(tmp_path / "out") == {"top_depth.png", "wide_depth.png"}
    for name, (h, w) in (("top", (48, 64)), ("wide", (60, 100))):
        out = read_png(tmp_path / "out" / f"{name}_depth.png")
        assert out.shape == (h, w) and out.dtype == np.uint16


def _reference_depth(model, bgr: np.ndarray, size: int = SIZE) -> np.ndarray:  # noqa: ANN001
    """The original run.py / infer_image pipeline, written out independently of depthcli's
    runtime: RGB in float64 / 255 (65535 for 16-bit), cubic resize to the lower-bound
    multiple-of-14 size, ImageNet normalisation, forward, bilinear upsample (V2:
    align_corners=True)."""
    import torch
    import torch.nn.functional as F

    h, w = bgr.shape[:2]
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) / (65535.0 if bgr.dtype == np.uint16 else 255.0)
    nh, nw = expected_processed_hw(h, w, size)
    x = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_CUBIC)
    x = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)).astype(np.float32))[None]
    with torch.no_grad():
        depth = model(x)
    return F.interpolate(depth[:, None], (h, w), mode="bilinear", align_corners=True)[0, 0].numpy()


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())


def test_quoted_glob_npy_matches_predict_and_reference(tmp_path: Path, tiny_ckpt: str,
                                                      model_args: list[str]) -> None:
    """Raw float32 depth from a quoted glob (8-bit, gray, RGBA and 16-bit PNGs) equals
    depthcli.predict in this process and the independent reference pipeline."""
    import depthcli

    kinds = {"a": ((48, 64), "bgr"), "b": ((60, 100), "bgr"), "gray": ((48, 64), "gray"),
             "rgba": ((64, 48), "bgra"), "deep": ((50, 70), "bgr16")}
    for i, (name, ((h, w), kind)) in enumerate(kinds.items()):
        write_image(tmp_path / "imgs" / f"{name}.png", h, w, seed=i, kind=kind)
    write_image(tmp_path / "imgs" / "skip.jpg")  # not matched by *.png
    proc = image("imgs/*.png", "-f", "npy", "-o", "raw", *model_args, cwd=tmp_path)
    assert_ok(proc)
    assert files_under(tmp_path / "raw") == {f"{name}_depth.npy" for name in kinds}

    model = depthcli.load_model(tiny_ckpt, device="cpu")
    for name, ((h, w), kind) in kinds.items():
        depth = np.load(tmp_path / "raw" / f"{name}_depth.npy")
        assert depth.dtype == np.float32 and depth.shape == (h, w), name
        assert np.isfinite(depth).all() and depth.std() / np.abs(depth).max() > 0.05, name
        path = str(tmp_path / "imgs" / f"{name}.png")
        # what the CLI promises: the pixels cv2.imread gives (16-bit files keep 16 bits)
        bgr = cv2.imread(path, cv2.IMREAD_COLOR | (cv2.IMREAD_ANYDEPTH if kind == "bgr16" else 0))
        assert bgr.dtype == (np.uint16 if kind == "bgr16" else np.uint8)
        api = depthcli.predict(model, bgr, size=SIZE)
        assert api.dtype == np.float32 and api.shape == (h, w)
        assert _rel(depth, api) <= 1e-6, f"{name}: CLI vs depthcli.predict {_rel(depth, api):.2e}"
        ref = _reference_depth(model, bgr)
        assert _rel(depth, ref) <= 1e-5, f"{name}: CLI vs reference pipeline {_rel(depth, ref):.2e}"
        if kind == "bgr16":  # the 16-bit precision reaches the model
            eight_bit = depthcli.predict(model, cv2.imread(path), size=SIZE)
            assert _rel(eight_bit, depth) > 1e-5


def test_list_from_stdin(tmp_path: Path, model_args: list[str]) -> None:
    write_image(tmp_path / "x" / "a.png", 48, 64, seed=0)
    write_image(tmp_path / "y" / "b.png", 60, 100, seed=1)
    listing = "x/a.png\n\n# a comment\ny/b.png\n"
    proc = image("--list", "-", "-o", "out", "-f", "gray", *model_args, input=listing, cwd=tmp_path)
    assert_ok(proc)
    assert files_under(tmp_path / "out") == {"a_depth.png", "b_depth.png"}
    assert read_png(tmp_path / "out/b_depth.png").shape == (60, 100)
    assert SUMMARY.match(lines(proc.stderr)[-1])["n"] == "2"


def test_list_file_and_quiet(tmp_path: Path, model_args: list[str]) -> None:
    write_image(tmp_path / "a.png", 48, 64, seed=0)
    write_image(tmp_path / "sub" / "b.jpg", 60, 100, seed=1)
    (tmp_path / "paths.txt").write_text(f"{tmp_path / 'a.png'}\nsub/b.jpg\n")
    proc = image("--list", "paths.txt", "-o", "out", "--quiet", *model_args, cwd=tmp_path)
    assert_ok(proc)
    assert proc.stderr == "" and proc.stdout == b""
    assert files_under(tmp_path / "out") == {"a_depth.png", "b_depth.png"}


# ----------------------------------------------------------------------------------- failures
def test_corrupt_files_in_a_batch(tmp_path: Path, model_args: list[str]) -> None:
    write_image(tmp_path / "batch" / "good1.png", 48, 64, seed=0)
    write_image(tmp_path / "batch" / "good2.jpg", 60, 100, seed=1)
    (tmp_path / "batch" / "bad.jpg").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "batch" / "empty.png").write_bytes(b"")
    proc = image("batch", "-o", "out", *model_args, cwd=tmp_path)
    assert_ok(proc, code=1)
    err = lines(proc.stderr)
    problems = [line for line in err if line.startswith("depthcli: ")]
    assert len(problems) == 2, err
    assert sum("batch/bad.jpg" in line for line in problems) == 1, problems
    assert sum("batch/empty.png" in line for line in problems) == 1, problems
    assert files_under(tmp_path / "out") == {"good1_depth.png", "good2_depth.png"}
    summary = SUMMARY.match(err[-1])
    assert summary and (summary["n"], summary["failed"]) == ("2", "2"), err[-1]
    assert len(err) == 2 + 2 + 1  # two problems, two images, the summary: no codec chatter
    assert temp_leftovers(tmp_path) == []


def test_unknown_colormap_is_a_usage_error(tmp_path: Path, model_args: list[str]) -> None:
    write_image(tmp_path / "a.png")
    proc = image("a.png", "--colormap", "nope", *model_args, cwd=tmp_path)
    assert_ok(proc, code=2)
    assert "unknown colormap 'nope'" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_two_inputs_to_stdout_is_a_usage_error(tmp_path: Path, model_args: list[str]) -> None:
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png", seed=1)
    proc = image("a.png", "b.png", "-o", "-", *model_args, cwd=tmp_path)
    assert_ok(proc, code=2)
    assert proc.stdout == b""
    assert "-o - writes one result to stdout, but 2 inputs were given" in proc.stderr


def test_missing_model_exits_3_with_one_line(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    proc = image("a.png", "--model", str(tmp_path / "nope.safetensors"), *SIZE_ARG, cwd=tmp_path)
    assert_ok(proc, code=3)
    assert len(lines(proc.stderr)) == 1, proc.stderr
    assert proc.stderr.startswith("depthcli: error: ") and "nope.safetensors" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_model_version_for_a_pth_whose_name_does_not_tell(tmp_path: Path, tiny_model) -> None:  # noqa: ANN001
    write_image(tmp_path / "a.png")
    pth = str(tiny_model.unnamed_pth)
    proc = image("a.png", "--model", pth, *SIZE_ARG, cwd=tmp_path)
    assert_ok(proc, code=3)
    assert len(lines(proc.stderr)) == 1 and "--model-version" in proc.stderr, proc.stderr
    assert not (tmp_path / "a_depth.png").exists()
    assert_ok(image("a.png", "--model", pth, "--model-version", "2", *SIZE_ARG, cwd=tmp_path))
    assert read_png(tmp_path / "a_depth.png").shape == (48, 64, 3)


# ----------------------------------------------------------------------------------- batch control
def test_skip_existing(tmp_path: Path, model_args: list[str]) -> None:
    write_image(tmp_path / "in" / "a.png", seed=0)
    write_image(tmp_path / "in" / "b.png", seed=1)
    assert_ok(image("in", "-o", "out", *model_args, cwd=tmp_path))
    kept = tmp_path / "out/a_depth.png"
    mtime = kept.stat().st_mtime_ns
    (tmp_path / "out/b_depth.png").unlink()
    time.sleep(0.01)
    proc = image("in", "-o", "out", "--skip-existing", *model_args, cwd=tmp_path)
    assert_ok(proc)
    assert kept.stat().st_mtime_ns == mtime, "an existing output was rewritten"
    assert (tmp_path / "out/b_depth.png").is_file()
    err = lines(proc.stderr)
    assert "skipped 1 input whose output exists" in err, err
    assert [line.split(":")[0] for line in err if " ms (total " in line] == ["in/b.png"], err
    assert SUMMARY.match(err[-1])["n"] == "1"


def test_names_differing_only_in_suffix_do_not_overwrite_each_other(tmp_path: Path, model_args: list[str]) -> None:
    write_image(tmp_path / "in" / "a.png", seed=0)
    write_image(tmp_path / "in" / "a.jpg", seed=1)
    write_image(tmp_path / "in" / "b.png", seed=2)
    assert_ok(image("in", "-o", "out", "-f", "npy", *model_args, cwd=tmp_path))
    assert files_under(tmp_path / "out") == {"a_jpg_depth.npy", "a_png_depth.npy", "b_depth.npy"}
    assert not np.array_equal(np.load(tmp_path / "out/a_jpg_depth.npy"), np.load(tmp_path / "out/a_png_depth.npy"))


def test_same_names_from_different_folders_get_distinct_outputs(tmp_path: Path, model_args: list[str]) -> None:
    """#25 item 1: shots/a.jpg and other/a.jpg into one -o folder used to report the same
    destination twice, the second output replacing the first."""
    write_image(tmp_path / "shots" / "a.jpg", seed=0)
    write_image(tmp_path / "other" / "a.jpg", seed=1)
    write_image(tmp_path / "b.png", seed=2)
    proc = image("shots/a.jpg", "other/a.jpg", "b.png", "-o", "out", "-f", "npy", *model_args, cwd=tmp_path)
    assert_ok(proc)
    assert files_under(tmp_path / "out") == {"shots_a_jpg_depth.npy", "other_a_jpg_depth.npy", "b_depth.npy"}
    shown = [line.rsplit(" -> ", 1)[1] for line in lines(proc.stderr) if " ms (total " in line]
    assert shown == ["out/shots_a_jpg_depth.npy", "out/other_a_jpg_depth.npy", "out/b_depth.npy"]  # the real ones
    assert not np.array_equal(np.load(tmp_path / "out/shots_a_jpg_depth.npy"),
                              np.load(tmp_path / "out/other_a_jpg_depth.npy"))


def test_no_output_replaces_an_input_of_the_same_run(tmp_path: Path, model_args: list[str]) -> None:
    """An input named like another input's output (a user's own a_depth.png, not depthcli's)
    is never overwritten by it: a.png takes the longer name."""
    write_image(tmp_path / "a.png", seed=0)
    mine = write_image(tmp_path / "a_depth.png", seed=1)  # no depthcli metadata: a photo
    proc = image("a.png", "a_depth.png", *model_args, cwd=tmp_path)
    assert_ok(proc)
    assert np.array_equal(read_png(tmp_path / "a_depth.png"), mine), "an input was overwritten"
    assert (tmp_path / "a_png_depth.png").is_file() and (tmp_path / "a_depth_depth.png").is_file()


def test_a_second_run_beside_the_inputs_leaves_the_first_runs_outputs_out(tmp_path: Path,
                                                                         model_args: list[str]) -> None:
    """#25 item 2: the first run's outputs were the second run's inputs (a_depth_depth.png), and
    --skip-existing still processed them."""
    for i, name in enumerate(("a.jpg", "b.png", "sub/c.png")):
        write_image(tmp_path / "photos" / name, seed=i)
    assert_ok(image("photos/", "-r", *model_args, cwd=tmp_path))
    first = files_under(tmp_path / "photos")
    assert first == {"a.jpg", "a_depth.png", "b.png", "b_depth.png", "sub/c.png", "sub/c_depth.png"}
    for extra in (["-r"], ["-r", "--skip-existing"]):
        proc = image("photos/", *extra, *model_args, cwd=tmp_path)
        assert_ok(proc)
        assert files_under(tmp_path / "photos") == first, extra
        err = lines(proc.stderr)
        assert ("depthcli: left out 3 depthcli outputs found among the inputs (name them explicitly to process "
                "them)") in err, err
    proc = image("photos/*.png", *model_args, cwd=tmp_path)  # a quoted glob: the same rule
    assert_ok(proc)
    assert "depthcli: left out 2 depthcli outputs found among the inputs" in proc.stderr, proc.stderr
    assert files_under(tmp_path / "photos") == first
    named = image("photos/a_depth.png", *model_args, cwd=tmp_path)  # named explicitly: taken
    assert_ok(named)
    assert (tmp_path / "photos" / "a_depth_depth.png").is_file() and "left out" not in named.stderr


def test_stats_file_is_overwritten_so_the_same_command_runs_again(tmp_path: Path, model_args: list[str]) -> None:
    """#25 item 5: --stats FILE names an output; an existing one is replaced, not an error."""
    write_image(tmp_path / "a.png")
    (tmp_path / "s.jsonl").write_text("old\n" * 5)
    for _ in range(2):
        assert_ok(image("a.png", "--stats", "s.jsonl", "-q", *model_args, cwd=tmp_path))
        assert [row["name"] for row in read_stats(tmp_path / "s.jsonl")] == ["a.png"]


@pytest.mark.parametrize(("args", "message"), [
    (["-f", "npy", "--invert"], "--invert applies only to the PNG formats (color, gray, gray16): npy holds the raw "
                                "depth"),
    (["-f", "exr", "--invert"], "--invert applies only to the PNG formats"),
    (["-f", "gray16", "--colormap", "turbo"], "--colormap applies only to --format color"),
    (["--focal", "500"], "--focal applies only to --format ply"),
    (["--depth-shift", "1", "--depth-scale", "2"], "--depth-scale, --depth-shift apply only to --format ply"),
    (["-o", "-", "--skip-existing"], "--skip-existing applies only to outputs written to files, not -o -"),
    (["--ray-actors", "2"], "--ray-actors applies only with --ray"),
    (["--token", "x"], "--token applies only with --server"),
    (["--backend", "openvino", "--device", "cuda"], "--backend openvino runs on the CPU, not cuda"),
], ids=["invert-npy", "invert-exr", "colormap-gray16", "focal", "ply-two", "skip-stdout", "ray-actors", "token",
        "openvino-cuda"])
def test_options_that_cannot_apply_are_refused(tmp_path: Path, model_args: list[str], args: list[str],
                                               message: str) -> None:
    """#25 items 14 and 6: refused in one line, exit 2, before anything is read or written
    (openvino with an explicit GPU device too, whatever this machine has)."""
    write_image(tmp_path / "a.png")
    proc = image("a.png", *args, *model_args, cwd=tmp_path)
    assert_ok(proc, code=2)
    assert f"Error: {message}" in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_an_option_given_at_its_default_value_is_still_refused_where_it_cannot_apply(tmp_path: Path) -> None:
    proc = image("a.png", "-f", "npy", "--colormap", "inferno", cwd=tmp_path)  # refused before reading a.png
    assert_ok(proc, code=2)
    assert "--colormap applies only to --format color" in proc.stderr, proc.stderr


def test_checkpoint_errors_name_the_model_as_given(tmp_path: Path, tiny_ckpt: str) -> None:
    """#25 item 16: the path as typed (not its base name), "empty file" for an empty checkpoint,
    and $DEPTHCLI_MODEL named when the variable chose the model."""
    write_image(tmp_path / "a.png")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.pth").write_bytes(b"")
    (tmp_path / "models" / "r.pth").write_bytes(b"\x00not a checkpoint" * 10)
    cases = [(["--model", "models/m.pth"], None, "depthcli: error: models/m.pth: empty file"),
             (["--model", "models/r.pth"], None, "depthcli: error: models/r.pth: not a readable PyTorch checkpoint"),
             ([], {"DEPTHCLI_MODEL": "models/nope.pth"},
              "depthcli: error: $DEPTHCLI_MODEL=models/nope.pth: no such file, folder or model name"),
             ([], {"DEPTHCLI_MODEL": "models/m.pth"}, "depthcli: error: $DEPTHCLI_MODEL=models/m.pth: empty file")]
    for args, env, message in cases:
        proc = image("a.png", *args, *SIZE_ARG, cwd=tmp_path, env=env)
        assert_ok(proc, code=3)
        assert lines(proc.stderr) == [lines(proc.stderr)[0]] and proc.stderr.startswith(message), proc.stderr


def test_max_side_caps_the_processed_size(tmp_path: Path, model_args: list[str]) -> None:
    write_image(tmp_path / "pano.png", 40, 200, seed=0)  # 70 x 350 uncapped
    write_image(tmp_path / "small.png", 48, 64, seed=1)  # 70 x 98: under the cap, unchanged
    proc = image("pano.png", "small.png", "--max-side", "140", "--stats", "s.jsonl", "-f", "npy",
                   *model_args, cwd=tmp_path)
    assert_ok(proc)
    stats = {s["name"]: s for s in read_stats(tmp_path / "s.jsonl")}
    assert expected_processed_hw(40, 200) == (70, 350)
    assert stats["pano.png"]["processed_hw"] == [28, 140]
    assert stats["small.png"]["processed_hw"] == [70, 98]
    assert np.load(tmp_path / "pano_depth.npy").shape == (40, 200)  # back at the image's size
    assert "pano.png: 200x40 -> 140x28, " in proc.stderr


def test_max_side_long_side_reaches_the_cap() -> None:
    from depthcli.runtime.preprocess import processed_size

    assert processed_size(40, 275, SIZE, 140)[1] == 140  # float scaling gave 126


def test_16bit_gray_and_rgba_inputs_as_pictures(tmp_path: Path, model_args: list[str]) -> None:
    write_image(tmp_path / "deep.png", 50, 70, seed=0, kind="bgr16")
    write_image(tmp_path / "gray.png", 48, 64, seed=1, kind="gray")
    write_image(tmp_path / "rgba.png", 64, 48, seed=2, kind="bgra")
    proc = image("deep.png", "gray.png", "rgba.png", "--side-by-side", "-o", "out", *model_args, cwd=tmp_path)
    assert_ok(proc)
    for name, (h, w) in (("deep", (50, 70)), ("gray", (48, 64)), ("rgba", (64, 48))):
        out = read_png(tmp_path / "out" / f"{name}_depth.png")
        assert out.shape == (h, 2 * w, 3) and out.dtype == np.uint8, name
    left = read_png(tmp_path / "out/gray_depth.png")[:, :64]
    assert np.array_equal(left, cv2.cvtColor(read_png(tmp_path / "gray.png"), cv2.COLOR_GRAY2BGR))
    rgba_left = read_png(tmp_path / "out/rgba_depth.png")[:, :48]
    assert np.array_equal(rgba_left, read_png(tmp_path / "rgba.png")[..., :3])


def test_the_cli_offers_exactly_the_job_formats() -> None:
    """cli.image keeps its own copy of the format names (so --help imports nothing heavy)."""
    from depthcli.cli.image import FORMATS as cli_formats
    from depthcli.jobs.image import FORMATS as job_formats

    assert list(cli_formats) == list(job_formats)
