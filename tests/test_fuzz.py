"""End-to-end fuzzing of the installed ``depthcli``: bad, odd and hostile inputs, broken
outputs, signals and memory limits, each through a real subprocess.

For every case: the documented exit code, no ``Traceback``, the error as ONE stderr line naming
the input and the reason (and no other stray line: codec chatter, multi-line messages), no
partial output and no hidden temporary file (``.*.tmp*``) left, and every other input of the
batch processed. The inputs are built in memory by ``fuzz_cases.py``.

Fast by default (a tiny random model at ``--size 70``; several CLI runs go in parallel).
``DEPTHCLI_FUZZ_LONG=1`` adds random seeds: more cut points, random byte flips in images,
videos and checkpoints, extreme aspect ratios without ``--max-side``, and signals at random
moments. A per-kind summary table is printed at the end of the session (``pytest -s``), and
written as JSON to ``$DEPTHCLI_FUZZ_REPORT`` when set.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import fuzz_cases as fc
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals, rlimits and setpriv are POSIX")

LONG = os.environ.get("DEPTHCLI_FUZZ_LONG") == "1"
SEEDS = list(range(6)) if LONG else [0]
EXTRA_CUTS = 6 if LONG else 0  # random cut points / byte-flip variants per seed and format
SIZE = ["--size", "70"]
PARALLEL = 3  # CLI runs at once: each spends most of its time importing torch
TIMEOUT = 300

# ----------------------------------------------------------------------------------- summary
CASES: dict[str, dict[str, int]] = defaultdict(lambda: {"tried": 0, "failed": 0})
TOTALS: dict[str, object] = {"cli_runs": 0, "cli_seconds": 0.0, "tracebacks": 0, "partial_files": 0,
                             "temp_files": 0, "stray_lines": 0, "code_executed_from_checkpoint": "not tested",
                             "peak_rss_8000x6000_mib": None}


def _print_summary() -> None:
    if not CASES:
        return
    width = max(len(k) for k in CASES)
    rows = [f"{'kind':<{width}}  tried  failed", f"{'-' * width}  -----  ------"]
    for kind in sorted(CASES):
        c = CASES[kind]
        rows.append(f"{kind:<{width}}  {c['tried']:>5}  {c['failed']:>6}")
    total = sum(c["tried"] for c in CASES.values())
    rows.append(f"{'total':<{width}}  {total:>5}  {sum(c['failed'] for c in CASES.values()):>6}")
    rows.append("")
    for key, value in TOTALS.items():
        rows.append(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")
    rows.append(f"mode: {'long' if LONG else 'fast'} (seeds {SEEDS})")
    print("\n\n=== depthcli fuzz summary ===\n" + "\n".join(rows))
    report = os.environ.get("DEPTHCLI_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps({"cases": CASES, "totals": TOTALS, "long": LONG}, indent=2))


@pytest.fixture(scope="module", autouse=True)
def _fuzz_summary():
    yield
    _print_summary()


class Problems:
    """Collects every failed check of a test (so the counts cover all cases), then fails once."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.items: list[str] = []

    def case(self, ok: bool, message: str, kind: str | None = None) -> bool:
        k = kind or self.kind
        CASES[k]["tried"] += 1
        if not ok:
            CASES[k]["failed"] += 1
            self.items.append(f"[{k}] {message}")
        return ok

    def check(self, ok: bool, message: str) -> bool:
        """A check that is part of a case already counted."""
        if not ok:
            self.items.append(f"[{self.kind}] {message}")
        return ok

    def done(self) -> None:
        assert not self.items, "\n" + "\n".join(self.items)


# ----------------------------------------------------------------------------------- running
def depthcli_command() -> list[str]:
    beside = Path(sys.executable).with_name("depthcli")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("depthcli")
    return [found] if found else [sys.executable, "-m", "depthcli"]


@dataclass
class Run:
    args: list[str]
    rc: int
    stderr: str
    stdout: bytes
    seconds: float
    time_report: str = ""  # /usr/bin/time -v output, split off stderr

    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def errors_for(self, label: str) -> list[str]:
        return [line for line in self.lines() if line.startswith(f"depthcli: {label}: ")]


def cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DEPTHCLI_MODEL", "DISPLAY", "WAYLAND_DISPLAY", "HF_ENDPOINT", "HF_TOKEN")}
    # OMP_NUM_THREADS=1: on a busy 2-core machine, spinning OpenMP workers make the tiny model's
    # forward seconds instead of milliseconds; threading is not what is being tested here.
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(home), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
               PYTHONDONTWRITEBYTECODE="1")
    return env


def _child_setup(fsize: int | None) -> Callable[[], None]:
    def setup() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # pytest run as a background job ignores it
        if fsize is not None:  # a "full disk": writes past fsize fail with EFBIG
            import resource

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return setup


def run_cli(args: Sequence[object], *, cwd: Path, home: Path, fsize: int | None = None,
            wrapper: Sequence[str] = (), timed: bool = False, allow_traceback: bool = False) -> Run:
    args = [str(a) for a in args]
    prefix = list(wrapper)
    if timed and Path("/usr/bin/time").exists():
        prefix = ["/usr/bin/time", "-v", *prefix]
    t0 = time.perf_counter()
    proc = subprocess.run([*prefix, *depthcli_command(), *args], cwd=cwd, env=cli_env(home),
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT,
                          preexec_fn=_child_setup(fsize))
    seconds = time.perf_counter() - t0
    stderr = proc.stderr.decode("utf-8", "replace")
    time_report = ""
    if prefix[:2] == ["/usr/bin/time", "-v"]:
        stderr, sep, rest = stderr.partition("\tCommand being timed:")
        if sep:
            time_report = sep + rest
        stderr = re.sub(r"(?m)^Command (exited with non-zero status|terminated by signal) \d+\n?", "", stderr)
    run = Run(args, proc.returncode, stderr, proc.stdout, seconds, time_report)
    _account(run, allow_traceback)
    return run


def _account(run: Run, allow_traceback: bool = False) -> None:
    TOTALS["cli_runs"] = int(TOTALS["cli_runs"]) + 1
    TOTALS["cli_seconds"] = float(TOTALS["cli_seconds"]) + run.seconds
    if allow_traceback:  # the --debug run: its traceback is the point
        return
    if "Traceback" in run.stderr:
        TOTALS["tracebacks"] = int(TOTALS["tracebacks"]) + 1
    TOTALS["stray_lines"] = int(TOTALS["stray_lines"]) + len(stray_lines(run))


def run_many(jobs: list[dict], **common) -> list[Run]:
    """Several ``run_cli`` calls at once (each job: keyword arguments), results in order."""
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(lambda job: run_cli(**{**common, **job}), jobs))


# Every line depthcli may print on stderr; anything else (a traceback, codec chatter, the second
# line of a multi-line message) is a stray line.
_KNOWN_LINES = [
    r"depthcli: .*",
    r".*: \d+x\d+ -> \d+x\d+, \d+ ms \(total \d+ ms\), peak (RSS|VRAM) \d+ MiB, (torch|openvino) \w+ \w+( -> .*)?",
    r"frame \d+: \d+x\d+ -> \d+x\d+, .*",
    r"\d+ (image|frame)s?( processed)?(, \d+ failed)?(: .*)?",
    r".*: \d+x\d+, [\d.e+]+ fps, (\d+|unknown) frames -> .*",
    r"Usage: depthcli .*", r"Try 'depthcli .* for help\.", r"Error: .*",
]
_KNOWN = re.compile("|".join(f"(?:{p})" for p in _KNOWN_LINES))


def stray_lines(run: Run) -> list[str]:
    return [line for line in run.lines() if not _KNOWN.fullmatch(line)]


def temp_leftovers(*roots: Path) -> list[str]:
    found = []
    for root in roots:
        found += [str(p) for p in Path(root).rglob(".*.tmp*")]
    return sorted(found)


def png_complete(path: Path) -> np.ndarray | None:
    """The decoded PNG if the file is whole (ends with IEND and decodes), else None."""
    data = path.read_bytes()
    if not data.endswith(b"IEND\xaeB`\x82"):
        return None
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def decoded_frames(path: Path) -> tuple[int, tuple[int, int] | None]:
    cap = cv2.VideoCapture(str(path))
    n, size = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, size = n + 1, (frame.shape[1], frame.shape[0])
    cap.release()
    return n, size


def common_checks(p: Problems, run: Run, expect_rc: int | set[int], *roots: Path, what: str = "") -> bool:
    """Exit code, no traceback, no stray line, no temp files: one case."""
    codes = {expect_rc} if isinstance(expect_rc, int) else expect_rc
    tag = what or " ".join(run.args[:3])
    ok = p.check(run.rc in codes, f"{tag}: exit {run.rc}, expected {sorted(codes)}; stderr:\n{run.stderr}")
    ok &= p.check("Traceback" not in run.stderr, f"{tag}: traceback:\n{run.stderr}")
    stray = stray_lines(run)
    ok &= p.check(not stray, f"{tag}: stray stderr lines {stray!r}")
    temps = temp_leftovers(*roots)
    if temps:
        TOTALS["temp_files"] = int(TOTALS["temp_files"]) + len(temps)
    ok &= p.check(not temps, f"{tag}: temporary files left: {temps}")
    return ok


def check_failure(p: Problems, run: Run, label: str, reason: str, output: Path | None, kind: str | None = None,
                  extra_ok: bool = True) -> bool:
    """One input that must fail: exactly one error line naming it, with the reason; no output."""
    lines = run.errors_for(label)
    ok = len(lines) == 1 and reason in lines[0] and "\n" not in lines[0] and extra_ok
    partial = output is not None and output.exists()
    if partial:
        TOTALS["partial_files"] = int(TOTALS["partial_files"]) + 1
    return p.case(ok and not partial,
                  f"{label}: want one line with {reason!r} and no output; got {lines!r}, output exists: {partial}",
                  kind)


def check_image_output(p: Problems, run: Run, label: str, output: Path, hw: tuple[int, int] | None,
                       kind: str | None = None) -> bool:
    """One input that must succeed: no error line, a complete PNG of the image's own size."""
    errors = run.errors_for(label)
    picture = png_complete(output) if output.exists() else None
    if output.exists() and picture is None:
        TOTALS["partial_files"] = int(TOTALS["partial_files"]) + 1
    ok = not errors and picture is not None and (hw is None or picture.shape[:2] == hw)
    return p.case(ok, f"{label}: want {output.name} of size {hw}; errors {errors!r}, "
                      f"got {None if picture is None else picture.shape}", kind)


# ----------------------------------------------------------------------------------- model
@dataclass
class FuzzModel:
    safetensors: Path
    original_state: dict  # original-layout (``pretrained.*``/``depth_head.*``) tensors
    home: Path  # HF_HOME for the runs: empty, offline
    extra: dict = field(default_factory=dict)


def _own_tiny_model(directory: Path) -> tuple[Path, Path]:
    """Fallback when conftest has no ``tiny_model``: model_factory's tiny shape, randomly
    perturbed (no calibration needed for fuzzing), as original .pth and depthcli safetensors."""
    import torch
    from model_factory import ModelSpec, hf_config, original_state_dict, perturb_
    from transformers import DepthAnythingForDepthEstimation

    from depthcli.model import build_model, read_checkpoint, save_safetensors

    spec = ModelSpec("tiny", 2)
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        hf = DepthAnythingForDepthEstimation(hf_config(spec)).eval()
    perturb_(hf, spec.seed)
    pth = directory / "depth_anything_v2_fuzz.pth"
    torch.save(original_state_dict(hf), pth)
    path = directory / "fuzz-tiny.safetensors"
    save_safetensors(build_model(read_checkpoint(pth)), path)
    return path, pth


@pytest.fixture(scope="session")
def fuzz_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> FuzzModel:
    import torch

    directory = tmp_path_factory.mktemp("fuzz-model")
    try:  # the shared CLI-test model, when conftest provides it (built once per session)
        tiny = request.getfixturevalue("tiny_model")
        safetensors, pth = Path(tiny.safetensors), Path(tiny.unnamed_pth)
    except Exception:  # noqa: BLE001 - no such fixture (or it failed): build our own
        safetensors, pth = _own_tiny_model(directory)
    state = torch.load(pth, map_location="cpu", weights_only=True)
    home = directory / "hf-home"
    home.mkdir()
    return FuzzModel(safetensors, state, home)


@pytest.fixture
def model_args(fuzz_model: FuzzModel) -> list[str]:
    return ["--model", str(fuzz_model.safetensors), *SIZE]


def write_files(directory: Path, files: dict[str, bytes]) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, data in files.items():
        (directory / name).write_bytes(data)
        out[name] = directory / name
    return out


def depth_png(out: Path, name: str) -> Path:
    return out / f"{Path(name).stem}_depth.png"


# ----------------------------------------------------------------------------------- images
def test_bad_images(tmp_path: Path, fuzz_model: FuzzModel, model_args: list[str]) -> None:
    """Unreadable files with image extensions, in one batch between good images; bombs too,
    with the pixel guard off (--max-pixels 0) so OpenCV's own limit must give the one line."""
    p = Problems("image: bad file")
    jobs, expected = [], []
    for seed in SEEDS:
        src = tmp_path / f"seed{seed}"
        cases = fc.bad_images(seed, EXTRA_CUTS)
        write_files(src, {name: data for name, (data, _) in cases.items()})
        write_files(src, {"bomb.png": fc.png_bomb(100_000, 100_000), "bomb.jpg": fc.jpeg_bomb(60_000, 60_000)})
        write_files(src, {"good_first.png": fc.encode("png", fc.photo(seed=seed)),
                          "good_last.jpg": fc.encode("jpg", fc.photo(seed=seed + 1))})
        (src / "emptydir.png").mkdir()
        names = ["good_first.png", "emptydir.png", *cases, "bomb.png", "bomb.jpg", "good_last.jpg"]
        out = tmp_path / f"out{seed}"
        jobs.append({"args": ["image", *names, "-o", out, *model_args, "--max-pixels", "0"], "cwd": src})
        expected.append((src, out, cases))
    for run, (src, out, cases) in zip(run_many(jobs, home=fuzz_model.home), expected, strict=True):
        common_checks(p, run, 1, src, out, what=f"bad images {src.name}")
        for name, (_, reason) in cases.items():
            if name.startswith("flip"):  # random byte flips: may still decode; never a crash
                target = depth_png(out, name)
                if run.errors_for(name):
                    check_failure(p, run, name, "", target, "image: random byte flips")
                else:
                    check_image_output(p, run, name, target, None, "image: random byte flips")
                continue
            check_failure(p, run, name, reason, depth_png(out, name))
        check_failure(p, run, "emptydir.png", "is a folder with no images", None, "image: directory named x.png")
        for name in ("bomb.png", "bomb.jpg"):
            check_failure(p, run, name, "is over OpenCV's size limit (OPENCV_IO_MAX_IMAGE_PIXELS",
                          depth_png(out, name), "image: huge declared size, --max-pixels 0")
        for name, hw in (("good_first.png", (48, 64)), ("good_last.jpg", (48, 64))):
            check_image_output(p, run, name, depth_png(out, name), hw, "image: good neighbours in a batch")
    p.done()


def test_odd_images_and_bombs(tmp_path: Path, fuzz_model: FuzzModel, model_args: list[str]) -> None:
    """Tiny, 16-bit, gray, alpha, CMYK and extreme-aspect images are processed at their own
    size; decompression bombs are refused from the header with the limit in the message."""
    p = Problems("image: odd but valid")
    odd = fc.odd_images()
    bombs = fc.bombs()
    write_files(tmp_path / "in", {name: data for name, (data, _) in odd.items()})
    write_files(tmp_path / "in", {name: data for name, (data, _) in bombs.items()})
    names = [*odd, *bombs]
    jobs = [{"args": ["image", *names, "-o", tmp_path / "capped", *model_args, "--max-side", "518"]}]
    extreme = [n for n in odd if n.startswith(("wide", "tall"))]
    if LONG:  # without --max-side: 70 x 46662 network inputs, ~20 s each on a laptop CPU
        jobs.append({"args": ["image", *extreme, "-o", tmp_path / "uncapped", *model_args]})
    runs = run_many(jobs, home=fuzz_model.home, cwd=tmp_path / "in")
    run = runs[0]
    common_checks(p, run, 1, tmp_path, what="odd images")
    p.check(run.seconds < 120, f"odd images + bombs took {run.seconds:.0f} s")
    for name, (_, hw) in odd.items():
        check_image_output(p, run, name, depth_png(tmp_path / "capped", name), hw)
    for name in extreme:  # what --max-side does: the long side capped at 518, a 14-pixel short side
        m = re.search(rf"^{re.escape(name)}: (\d+)x(\d+) -> (\d+)x(\d+),", run.stderr, re.M)
        p.case(bool(m) and max(int(m[3]), int(m[4])) <= 518 and min(int(m[3]), int(m[4])) == 14,
               f"{name}: --max-side 518 should give a 518x14 network input: {m and m.group(0)}",
               "image: extreme aspect, --max-side")
    for name, (_, reason) in bombs.items():
        check_failure(p, run, name, reason + " (--max-pixels to raise it)", depth_png(tmp_path / "capped", name),
                      "image: huge declared size")
    if LONG:
        common_checks(p, runs[1], 0, tmp_path, what="extreme aspect uncapped")
        for name in extreme:
            check_image_output(p, runs[1], name, depth_png(tmp_path / "uncapped", name), odd[name][1],
                               "image: extreme aspect, no --max-side")
    p.done()


def test_list_files_and_odd_names(tmp_path: Path, fuzz_model: FuzzModel, model_args: list[str]) -> None:
    """--list files of random bytes, invalid UTF-8 and NUL separators, and an image whose name
    is not UTF-8: one line per bad entry, the real images processed."""
    p = Problems("image: --list and odd names")
    rng = np.random.default_rng(1)
    src = tmp_path / "in"
    src.mkdir()
    good = fc.encode("png", fc.photo())
    odd_name = os.fsdecode(b"caf\xe9-\xff.png")  # latin-1 bytes: surrogate-escaped in Python
    (src / odd_name).write_bytes(good)
    (src / "plain.png").write_bytes(good)
    lists = {
        "random.lst": rng.bytes(3000).replace(b"\0", b"\n"),
        "latin1.lst": b"plain.png\n" + os.fsencode(odd_name) + b"\nnon-exist\xe9nt.png\n",
        "nul.lst": b"plain.png\0missing\x01.png\0\0" + os.fsencode(odd_name) + b"\0",
        "utf16.lst": "plain.png\nautre.png\n".encode("utf-16"),
    }
    write_files(src, lists)
    if not LONG:
        lists = {k: v for k, v in lists.items() if k in ("random.lst", "nul.lst")}
    jobs = [{"args": ["image", "--list", name, "-o", tmp_path / f"out-{name}", *model_args]} for name in lists]
    runs = run_many(jobs, home=fuzz_model.home, cwd=src)
    for name, run in zip(lists, runs, strict=True):
        out = tmp_path / f"out-{name}"
        expect = {"random.lst": 1, "latin1.lst": 1, "nul.lst": 1, "utf16.lst": 1}[name]
        ok = common_checks(p, run, expect, src, out, what=f"--list {name}")
        lines = [line for line in run.lines() if line.startswith("depthcli: ") and "no such file" not in line
                 and "no files match" not in line and "not an image" not in line]
        ok &= p.check(not lines, f"--list {name}: unexpected errors {lines!r}")
        if name in ("latin1.lst", "nul.lst"):
            for image in ("plain.png", odd_name):
                picture = depth_png(out, image)
                ok &= p.check(picture.exists() and png_complete(picture) is not None,
                              f"--list {name}: {image!r} not processed")
        p.case(ok, f"--list {name}")
    p.done()


# ----------------------------------------------------------------------------------- videos
def _video_cases(directory: Path, seed: int) -> dict[str, tuple[str, int | None, tuple[int, int] | None]]:
    """name -> (expected error substring or "" for none, frames expected in the output, size)."""
    good = fc.write_video(directory / "good.mp4", 12)
    data = good.read_bytes()
    fast = fc.faststart(data)
    sizes = [(64, 48)] * 4 + [(96, 80)] * 4 + [(40, 30)] * 3
    frames = [fc.encode("jpg", fc.photo(h, w, seed=i)) for i, (w, h) in enumerate(sizes)]
    w = cv2.VideoWriter(str(directory / "noframes.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    w.release()
    w = cv2.VideoWriter(str(directory / "noframes.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    w.release()
    rng = np.random.default_rng(seed)
    write_files(directory, {
        "cut_indexed.mp4": fast[: len(fast) // 2],
        "cut_plain.mp4": data[: len(data) // 2],
        "random.mp4": rng.bytes(5000),
        "zero.mp4": b"",
        "text.mp4": b"not a video\n" * 50,
        "sizes_stream.mjpeg": b"".join(frames),
        "sizes_avi.avi": fc.mjpeg_avi(frames, (64, 48)),
    })
    cannot_open = "cannot open: not a video, an unsupported codec, or a truncated file"
    cases = {
        "good.mp4": ("", 12, (64, 48)),
        "cut_indexed.mp4": ("stopped after", None, (64, 48)),  # frames: as many as decoded
        "cut_plain.mp4": (cannot_open, None, None),
        "random.mp4": (cannot_open, None, None),
        "zero.mp4": (cannot_open, None, None),
        "text.mp4": (cannot_open, None, None),
        "noframes.mp4": (cannot_open, None, None),
        "noframes.avi": ("no frame could be decoded", None, None),
        # the frame size changes twice mid-stream: OpenCV scales to the first size
        "sizes_stream.mjpeg": ("", 11, (64, 48)),
        "sizes_avi.avi": ("", 11, (64, 48)),
    }
    for i in range(EXTRA_CUTS):  # random cuts of the indexed file, random byte flips
        cut = int(rng.integers(16, len(fast) - 1))
        (directory / f"rcut{i}.mp4").write_bytes(fast[:cut])
        cases[f"rcut{i}.mp4"] = ("?", None, None)
        flipped = bytearray(fc.mjpeg_avi(frames, (64, 48)))
        for pos in rng.integers(0, len(flipped), size=int(rng.integers(1, 24))):
            flipped[pos] = int(rng.integers(0, 256))
        (directory / f"flip{i}.avi").write_bytes(bytes(flipped))
        cases[f"flip{i}.avi"] = ("?", None, None)
    return cases


def test_bad_videos(tmp_path: Path, fuzz_model: FuzzModel, model_args: list[str]) -> None:
    p = Problems("video: bad file")
    jobs, expected = [], []
    for seed in SEEDS:
        src, out = tmp_path / f"in{seed}", tmp_path / f"out{seed}"
        src.mkdir()
        cases = _video_cases(src, seed)
        jobs.append({"args": ["video", *cases, "-o", out, *model_args, "-q"], "cwd": src})
        expected.append((src, out, cases))
    single = expected[0][0]
    jobs.append({"args": ["video", "random.mp4", "-o", tmp_path / "single", *model_args, "-q"], "cwd": single})
    runs = run_many(jobs, home=fuzz_model.home)
    for run, (src, out, cases) in zip(runs[:-1], expected, strict=True):
        common_checks(p, run, 1, src, out, what=f"bad videos {src.name}")
        for name, (reason, frames, size) in cases.items():
            target = out / f"{Path(name).stem}_depth.mp4"
            errors = run.errors_for(name)
            got = decoded_frames(target) if target.exists() else (0, None)
            if reason == "?":  # random damage: either a clean failure or a playable output
                stopped = errors and "stopped after" in errors[0]
                ok = len(errors) <= 1 and (not target.exists() or got[0] > 0) and \
                    (target.exists() == (not errors or bool(stopped)))
                p.case(ok, f"{name}: errors {errors!r}, output frames {got}", "video: random damage")
            elif reason == "stopped after":
                m = re.fullmatch(rf"depthcli: {re.escape(name)}: stopped after (\d+) frames: decode error .*",
                                 errors[0]) if len(errors) == 1 else None
                p.case(bool(m) and got[0] == int(m[1]) > 0 and got[1] == size,
                       f"{name}: want one 'stopped after N frames' line and N playable frames; "
                       f"errors {errors!r}, output {got}", "video: truncated (frames so far kept)")
            elif reason:
                check_failure(p, run, name, reason, target)
            else:
                kind = "video: frame size changes mid-stream" if name.startswith("sizes") else "video: good"
                p.case(not errors and got == (frames, size), f"{name}: errors {errors!r}, output {got}", kind)
    single_run = runs[-1]
    common_checks(p, single_run, 5, single, what="single unopenable video")
    check_failure(p, single_run, "random.mp4", "cannot open", tmp_path / "single" / "random_depth.mp4",
                  "video: single unopenable input (exit 5)")
    p.done()


# ----------------------------------------------------------------------------------- checkpoints
def _checkpoint_cases(directory: Path, model: FuzzModel, marker: Path) -> dict[str, str]:
    """file name -> expected substring of the one-line error (exit 3)."""
    import torch
    from safetensors.torch import save_file

    good = model.safetensors.read_bytes()
    pth_buf = directory / "depth_anything_v2_good.pth"
    torch.save(model.original_state, pth_buf)
    pth = pth_buf.read_bytes()
    pth_buf.unlink()
    files: dict[str, bytes] = {
        "empty.pth": b"",
        "empty.safetensors": b"",
        "depth_anything_v2_truncated.pth": pth[: len(pth) // 2],
        "depth_anything_v2_cut_end.pth": pth[:-40],
        "random.pth": np.random.default_rng(2).bytes(4096),
        "text.pth": b"this is not a checkpoint\n" * 10,
    }
    expected = {
        "empty.pth": "/empty.pth: empty file",  # named as given to --model (#25 item 16), as an empty image is
        "empty.safetensors": "/empty.safetensors: empty file",
        "depth_anything_v2_truncated.pth": "not a readable PyTorch checkpoint",
        "depth_anything_v2_cut_end.pth": "not a readable PyTorch checkpoint",
        "random.pth": "random.pth: not a readable PyTorch checkpoint",
        "text.pth": "text.pth: not a readable PyTorch checkpoint",
    }
    # valid original-format keys, one tensor reshaped
    state = dict(model.original_state)
    key = next(k for k in state if k.endswith("attn.qkv.weight"))
    state[key] = state[key].reshape(-1, state[key].shape[1] // 2).clone()
    torch.save(state, directory / "depth_anything_v2_wrong_shape.pth")
    expected["depth_anything_v2_wrong_shape.pth"] = "does not fit the"
    # a whole tensor missing; a NaN in the weights
    state = dict(model.original_state)
    del state[next(k for k in state if k.startswith("depth_head.scratch.output_conv2"))]
    torch.save(state, directory / "depth_anything_v2_missing_key.pth")
    expected["depth_anything_v2_missing_key.pth"] = "missing keys"
    state = dict(model.original_state)
    nan = next(k for k in state if k.endswith("norm.weight"))
    state[nan] = state[nan].clone()
    state[nan][0] = float("nan")
    torch.save(state, directory / "depth_anything_v2_nan.pth")
    expected["depth_anything_v2_nan.pth"] = "non-finite values"
    # an unrelated network
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    torch.save(net.state_dict(), directory / "wrong_model.pth")
    save_file(net.state_dict(), str(directory / "wrong_model.safetensors"))
    expected["wrong_model.pth"] = "wrong_model.pth: not a Depth-Anything checkpoint"
    expected["wrong_model.safetensors"] = "wrong_model.safetensors: not a Depth-Anything checkpoint"
    torch.save({"a": [1, 2, 3]}, directory / "not_tensors.pth")
    expected["not_tensors.pth"] = "not_tensors.pth: entries that are not tensors"
    torch.save({7: torch.zeros(2)}, directory / "int_keys.pth")
    expected["int_keys.pth"] = "int_keys.pth: not a"
    # code execution attempts
    for name, data in fc.malicious_pickles(marker).items():
        files[name] = data
        expected[name] = f"{name}: refused to load: it holds objects other than tensors (Unsupported global"
    # broken safetensors headers
    for name, data in fc.bad_safetensors(good).items():
        files[name] = data
        expected[name] = f"{name}: not a readable safetensors file"
    # well-formed safetensors whose depthcli metadata is nonsense
    for field_name, value in (("version", "x"), ("num_heads", "many"), ("taps", "a,b"), ("max_depth", "far")):
        bad = _with_metadata(good, {f"depthcli.{field_name}": value})
        files[f"meta_{field_name}.safetensors"] = bad
        expected[f"meta_{field_name}.safetensors"] = f"meta_{field_name}.safetensors: "
    files["meta_config_json.safetensors"] = _with_metadata(good, {"format": "pt", "config": "{not json"})
    expected["meta_config_json.safetensors"] = "meta_config_json.safetensors: "
    write_files(directory, files)
    if LONG:  # random byte flips: a clean exit 3, or (tensor data hit) a model that loads
        rng = np.random.default_rng(3)
        for i in range(EXTRA_CUTS):
            for base, data in (("pth", pth), ("safetensors", good)):
                mutated = bytearray(data)
                for pos in rng.integers(0, min(len(data), 4096 if i % 2 else len(data)), size=8):
                    mutated[pos] = int(rng.integers(0, 256))
                name = f"depth_anything_v2_flip{i}.{base}"
                (directory / name).write_bytes(bytes(mutated))
                expected[name] = "?"
    return expected


def _with_metadata(good: bytes, changes: dict[str, str]) -> bytes:
    (n,) = np.frombuffer(good[:8], "<u8")
    header = json.loads(good[8 : 8 + int(n)])
    header["__metadata__"] = {**header.get("__metadata__", {}), **changes}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return fc.safetensors_bytes(raw, good[8 + int(n):])


FAST_CHECKPOINTS = {
    "empty.pth", "depth_anything_v2_truncated.pth", "depth_anything_v2_wrong_shape.pth",
    "wrong_model.pth", "evil_zip.pth", "evil_legacy.pth", "len_huge.safetensors", "bad_json.safetensors",
    "offsets_beyond.safetensors",
}  # + random.pth, run with --debug (the one-line error must still come last, after the traceback)


def test_bad_checkpoints(tmp_path: Path, fuzz_model: FuzzModel) -> None:
    p = Problems("checkpoint")
    marker = tmp_path / "PWNED"
    control = tmp_path / "control-marker"
    # the payloads are live: loading them unsafely runs their code (against a control marker)
    import pickle

    import torch

    for name, data in fc.malicious_pickles(control).items():
        if control.exists():
            control.unlink()
        (tmp_path / f"control-{name}").write_bytes(data)
        if name.endswith("legacy.pth"):
            pickle.loads(data)  # noqa: S301 - our own payload, to prove it does something
        else:
            torch.load(tmp_path / f"control-{name}", weights_only=False)
        assert control.exists(), f"{name}: the payload should run when loaded unsafely"
    cks = tmp_path / "ck"
    cks.mkdir()
    expected = _checkpoint_cases(cks, fuzz_model, marker)
    if not LONG:  # one CLI run (a torch import, ~2 s of CPU) per case: the brief's list only
        expected = {k: v for k, v in expected.items() if k in FAST_CHECKPOINTS}
    header_cases = set(fc.bad_safetensors(fuzz_model.safetensors.read_bytes())) | {"empty.safetensors"}
    (tmp_path / "a.png").write_bytes(fc.encode("png", fc.photo()))
    names = list(expected)
    jobs = [{"args": ["image", "a.png", "--model", cks / name, *SIZE, "-o", tmp_path / f"out-{name}"]}
            for name in names]
    debug_name = "random.pth"
    jobs.append({"args": ["--debug", "image", "a.png", "--model", cks / debug_name, *SIZE, "-o", tmp_path / "dbg"],
                 "allow_traceback": True})
    runs = run_many(jobs, home=fuzz_model.home, cwd=tmp_path)
    for name, run in zip(names, runs[:-1], strict=True):
        reason = expected[name]
        out = tmp_path / f"out-{name}" / "a_depth.png"
        if reason == "?":
            lines = [line for line in run.lines() if line.startswith("depthcli: error:")]
            ok = common_checks(p, run, {0, 3}, tmp_path, what=name)
            ok &= run.rc == 0 and png_complete(out) is not None or run.rc == 3 and len(lines) == 1 \
                and not out.exists()
            p.case(ok, f"{name}: exit {run.rc}, {lines!r}", "checkpoint: random byte flips")
            continue
        ok = common_checks(p, run, 3, tmp_path, what=name)
        lines = run.errors_for("error")
        ok &= len(lines) == 1 and reason in lines[0] and len(lines[0]) < 400
        kind = ("checkpoint: malicious pickle" if name.startswith("evil") else
                "checkpoint: bad safetensors header" if name in header_cases else
                "checkpoint: bad safetensors metadata" if name.startswith("meta_") else
                "checkpoint: wrong shapes / keys / model" if "wrong" in name or name.endswith(
                    ("missing_key.pth", "nan.pth", "tensors.pth", "keys.pth")) else
                "checkpoint: empty / truncated / random")
        p.case(ok and not out.exists(), f"{name}: want exit 3 and one line with {reason!r}; got exit {run.rc}, "
                                        f"{run.lines()!r}", kind)
    dbg = runs[-1]
    p.case(dbg.rc == 3 and "Traceback (most recent call last)" in dbg.stderr
           and dbg.lines()[-1].startswith(f"depthcli: error: {cks / debug_name}: not a readable PyTorch checkpoint"),
           f"--debug: want a traceback and the one-line error last; got:\n{dbg.stderr}",
           "checkpoint: --debug traceback")
    executed = marker.exists()
    TOTALS["code_executed_from_checkpoint"] = "YES" if executed else "no"
    p.case(not executed, "a checkpoint executed code (the marker file exists)", "checkpoint: malicious pickle")
    p.done()



# Archive-level mutations (fuzz_cases.archive_mutations): every case is read in-process and must
# give exactly torch.load's tensors or one line; these also go through the CLI (in long mode all
# the fixed ones; test_checkpoint_archive.py runs re-zipped files through it too).
FAST_ARCHIVE_CLI = {"deflate_pickle_only", "method_bzip2", "duplicate_appended"}
RANDOM_ARCHIVE_EDITS = 100 if LONG else 24  # random central-directory edits per seed (in-process only)


def _bitwise_equal(a: dict, b: dict) -> bool:
    """Same keys, dtypes, shapes and bytes (NaN payloads included)."""
    import torch

    def raw(t: torch.Tensor) -> torch.Tensor:
        return t.detach().reshape(-1).contiguous().view(torch.uint8)

    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
                                        and torch.equal(raw(a[k]), raw(b[k])) for k in a)


def test_checkpoint_archive_mutations(tmp_path: Path, fuzz_model: FuzzModel, monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    import torch

    from depthcli.model import CheckpointError, read_checkpoint

    # reading checkpoints is the same for every backend: the reference one, with no conversion
    # per file (each mutated file would be a new model to convert for OpenVINO)
    monkeypatch.setenv("DEPTHCLI_BACKEND", "torch")
    p = Problems("checkpoint: archive mutations")
    cks, resaved = tmp_path / "ck", tmp_path / "resaved"
    cks.mkdir()
    resaved.mkdir()
    good = cks / "depth_anything_v2_good.pth"
    torch.save(fuzz_model.original_state, good)
    original = read_checkpoint(good).state
    cases: dict[str, tuple[bytes, str | None]] = {}
    for seed in SEEDS:
        for name, case in fc.archive_mutations(good.read_bytes(), seed, RANDOM_ARCHIVE_EDITS).items():
            cases[f"s{seed}_{name}" if name.startswith("random") else name] = case
    cli: dict[str, str | None] = {}  # file name -> the error line the CLI must print (None: same depth)
    for name, (data, reason) in cases.items():
        path = cks / f"depth_anything_v2_{name}.pth"
        path.write_bytes(data)
        try:
            with warnings.catch_warnings():  # torch warns about what it unpickles from a damaged file
                warnings.simplefilter("ignore")
                reference = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - torch.load cannot read it: depthcli must refuse it too
            reference = None
        try:
            state, error = read_checkpoint(path).state, None
        except CheckpointError as e:
            state, error = None, str(e)
        if state is not None:  # loaded: exactly what torch.load gives, and only where allowed
            expected = None
            if reference is not None:
                torch.save(reference, resaved / path.name)
                expected = read_checkpoint(resaved / path.name).state
            ok = expected is not None and _bitwise_equal(state, expected) and reason in (fc.LOADS, fc.EITHER)
            p.case(ok, f"{path.name}: loaded (torch.load {'failed' if reference is None else 'loaded'}, "
                       f"same tensors: {expected is not None and _bitwise_equal(state, expected)}), "
                       f"expected {reason!r}", "checkpoint: archive mutation that loads")
        else:
            ok = ("\n" not in error and error.startswith(f"{path.name}: ") and len(error) < 400
                  and reason is not fc.LOADS and (reason == fc.EITHER or reason in error))
            p.case(ok, f"{path.name}: {error!r}, expected {reason!r}", "checkpoint: archive mutation refused")
        if name in FAST_ARCHIVE_CLI or (LONG and "random" not in name):
            if error is not None:
                cli[path.name] = error
            elif _bitwise_equal(state, original):
                cli[path.name] = None
    (tmp_path / "a.png").write_bytes(fc.encode("png", fc.photo()))
    names = ["depth_anything_v2_good.pth", *cli]
    jobs = [{"args": ["image", "a.png", "--model", cks / name, *SIZE, "-f", "npy", "-o", tmp_path / f"out-{name}"]}
            for name in names]
    runs = dict(zip(names, run_many(jobs, home=fuzz_model.home, cwd=tmp_path), strict=True))
    good_run = runs.pop("depth_anything_v2_good.pth")
    assert good_run.rc == 0, good_run.stderr
    depth = np.load(tmp_path / "out-depth_anything_v2_good.pth" / "a_depth.npy")
    for name, run in runs.items():
        out = tmp_path / f"out-{name}" / "a_depth.npy"
        if cli[name] is None:
            ok = common_checks(p, run, 0, tmp_path, what=name)
            ok &= out.exists() and np.array_equal(np.load(out), depth)
            p.case(ok, f"{name}: want exit 0 and the original depth; exit {run.rc}, {run.lines()!r}",
                   "checkpoint: archive mutation via the CLI")
        else:
            ok = common_checks(p, run, 3, tmp_path, what=name)
            as_given = f"{cks / name}: {cli[name].removeprefix(f'{name}: ')}"  # the CLI names it as --model gave it
            ok &= run.errors_for("error") == [f"depthcli: error: {as_given}"] and not out.exists()
            p.case(ok, f"{name}: want exit 3 and {cli[name]!r}; got exit {run.rc}, {run.lines()!r}",
                   "checkpoint: archive mutation via the CLI")
    p.done()


# ----------------------------------------------------------------------------------- outputs
def _can_drop_dac() -> list[str] | None:
    """A command prefix under which permission bits apply: as root, setpriv without the
    capabilities that bypass them; as another user, nothing."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        return None
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    return prefix if probe.returncode == 0 else None


def test_output_failures(tmp_path: Path, fuzz_model: FuzzModel, model_args: list[str]) -> None:
    p = Problems("output")
    src = tmp_path / "in"
    src.mkdir()
    (src / "small.png").write_bytes(fc.encode("png", fc.photo(4, 4)))
    (src / "a.png").write_bytes(fc.encode("png", fc.photo()))
    noisy = np.random.default_rng(0).integers(0, 256, (600, 800, 3), np.uint8)
    (src / "big.png").write_bytes(fc.encode("png", noisy))  # its depth PNG is well over 8 kB
    (src / "occupied.png").write_bytes(fc.encode("png", fc.photo(seed=3)))
    fc.write_video(src / "clip.mp4", 10)
    (src / "afile").write_text("a file, not a folder\n")
    efbig = tmp_path / "efbig"
    (efbig / "occupied_depth.png").mkdir(parents=True)  # the output path is taken by a folder
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    drop = _can_drop_dac()
    jobs = [
        {"args": ["image", "a.png", "small.png", "-o", "afile/sub", *model_args]},
        {"args": ["video", "clip.mp4", "-o", "afile/sub", *model_args, "-q"]},
        {"args": ["image", "small.png", "big.png", "occupied.png", "-o", efbig, *model_args], "fsize": 8192},
        {"args": ["video", "clip.mp4", "-o", tmp_path / "efbig-video", *model_args, "-q"], "fsize": 4096},
        {"args": ["image", "a.png", "-o", "afile", *model_args]},
        {"args": ["video", "clip.mp4", "-o", "afile", *model_args]},
        {"args": ["image", "a.png", "-o", tmp_path / "stats-out", "--stats", "afile/x.jsonl", *model_args]},
    ]
    if drop is not None:
        jobs += [{"args": ["image", "a.png", "small.png", "-o", readonly, *model_args], "wrapper": drop},
                 {"args": ["video", "clip.mp4", "-o", readonly, *model_args, "-q"], "wrapper": drop}]
    runs = run_many(jobs, home=fuzz_model.home, cwd=src)
    (enotdir_img, enotdir_vid, efbig_img, efbig_vid, exists_img, exists_vid, stats_bad) = runs[:7]

    common_checks(p, enotdir_img, 1, tmp_path, what="-o under a file (image)")
    for name in ("a.png", "small.png"):
        check_failure(p, enotdir_img, name, "Not a directory (ENOTDIR)", None, "output: -o under a regular file")
    common_checks(p, enotdir_vid, 1, tmp_path, what="-o under a file (video)")
    check_failure(p, enotdir_vid, "clip.mp4", "Not a directory (ENOTDIR)", None, "output: -o under a regular file")

    common_checks(p, efbig_img, 1, tmp_path, what="full disk (image)")
    check_image_output(p, efbig_img, "small.png", efbig / "small_depth.png", (4, 4), "output: full disk (EFBIG)")
    check_failure(p, efbig_img, "big.png", "File too large (EFBIG)", efbig / "big_depth.png",
                  "output: full disk (EFBIG)")
    check_failure(p, efbig_img, "occupied.png", "Is a directory (EISDIR)", None, "output: path taken by a folder")
    common_checks(p, efbig_vid, 1, tmp_path, what="full disk (video)")
    check_failure(p, efbig_vid, "clip.mp4", "the file is incomplete", tmp_path / "efbig-video" / "clip_depth.mp4",
                  "output: full disk (EFBIG)")

    for run, what in ((exists_img, "image"), (exists_vid, "video"), (stats_bad, "--stats")):
        ok = common_checks(p, run, 2, tmp_path, what=f"-o existing file ({what})")
        ok &= p.check(("exists and is not a folder" in run.stderr) or ("--stats" in run.stderr),
                      f"{what}: {run.stderr}")
        p.case(ok, f"-o/--stats into a file ({what})", "output: -o/--stats names a file (exit 2)")
    p.check(not (tmp_path / "stats-out").exists() or not any((tmp_path / "stats-out").iterdir()),
            "--stats failure still wrote outputs")

    if drop is not None:
        ro_img, ro_vid = runs[7:]
        common_checks(p, ro_img, 1, tmp_path, what="read-only -o (image)")
        for name in ("a.png", "small.png"):
            check_failure(p, ro_img, name, "Permission denied (EACCES)", readonly / f"{Path(name).stem}_depth.png",
                          "output: read-only directory")
        common_checks(p, ro_vid, 1, tmp_path, what="read-only -o (video)")
        check_failure(p, ro_vid, "clip.mp4", "permission denied", readonly / "clip_depth.mp4",
                      "output: read-only directory")
    else:
        CASES["output: read-only directory (SKIPPED: no setpriv)"]["tried"] += 0
    readonly.chmod(0o755)
    p.done()


# ----------------------------------------------------------------------------------- signals
def _interrupt(args: list[str], *, cwd: Path, home: Path, sig: int, after: int, delay: float) -> Run:
    """Start depthcli, send ``sig`` ``delay`` s after the ``after``-th finished item, wait."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([*depthcli_command(), *args], cwd=cwd, env=cli_env(home), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_child_setup(None))
    lines: list[bytes] = []
    done = threading.Event()

    def pump() -> None:
        for line in proc.stderr:
            lines.append(line)
        done.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and not done.is_set():
            if sum(b" -> " in ln or ln.startswith(b"frame ") for ln in lines) >= after:
                time.sleep(delay)
                proc.send_signal(sig)
                break
            time.sleep(0.005)
        proc.wait(timeout=TIMEOUT)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run = Run(args, proc.returncode, b"".join(lines).decode("utf-8", "replace"), b"", time.perf_counter() - t0)
    _account(run)
    return run


def test_signals(tmp_path: Path, fuzz_model: FuzzModel, model_args: list[str]) -> None:
    p = Problems("signal")
    src = tmp_path / "in"
    for i in range(60):
        write_files(src, {f"m{i:03d}.png": fc.encode("png", fc.photo(seed=i))})
    fc.write_video(src / "long.mp4", 300)
    rng = np.random.default_rng(4)
    trials = [(sig, kind, 5, 0.0) for sig in (signal.SIGINT, signal.SIGTERM) for kind in ("image", "video")]
    if LONG:
        trials += [(sig, kind, int(rng.integers(1, 12)), float(rng.uniform(0, 0.2)))
                   for sig in (signal.SIGINT, signal.SIGTERM) for kind in ("image", "video") for _ in range(3)]

    def one(i: int) -> tuple[Run, Path]:
        sig, kind, after, delay = trials[i]
        out = tmp_path / f"out{i}"
        args = (["image", str(src), "-o", str(out), *model_args] if kind == "image"
                else ["video", "long.mp4", "-o", str(out), *model_args])
        return _interrupt(args, cwd=src, home=fuzz_model.home, sig=sig, after=after, delay=delay), out

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, range(len(trials))))
    for (sig, kind, after, delay), (run, out) in zip(trials, results, strict=True):
        what = f"{signal.Signals(sig).name} during {kind} batch (after {after}, +{delay:.2f} s)"
        ok = common_checks(p, run, 130, src, out, what=what)
        ok &= p.check(run.lines()[-1:] and run.lines()[-1].startswith("depthcli: error: interrupted"),
                      f"{what}: last line {run.lines()[-1:]}")
        if kind == "image":
            written = sorted(out.glob("*.png")) if out.exists() else []
            reported = re.findall(r" -> (\S+_depth\.png)$", run.stderr, re.M)
            broken = [w.name for w in written if png_complete(w) is None]
            TOTALS["partial_files"] = int(TOTALS["partial_files"]) + len(broken)
            ok &= p.check(not broken and len(written) >= max(1, len(reported)) and len(written) < 60,
                          f"{what}: {len(written)} written, {len(reported)} reported, broken {broken}")
        else:
            video = out / "long_depth.mp4"
            m = re.search(r"interrupted after (\d+) frames; .* finalised and kept", run.stderr)
            got = decoded_frames(video) if video.exists() else (0, None)
            ok &= p.check(bool(m) and got[0] >= 1 and int(m[1]) <= got[0] <= int(m[1]) + 1 and got[1] == (64, 48),
                          f"{what}: message {m and m.group(0)!r}, video frames {got}")
        p.case(ok, what, f"signal: {signal.Signals(sig).name} during {kind}")
    p.done()


# ----------------------------------------------------------------------------------- memory
def test_memory_limits(tmp_path: Path, fuzz_model: FuzzModel) -> None:
    """An 8000x6000 photo at the default size works (peak RSS recorded); a network input that
    cannot fit (a huge --size, a thin panorama at 518 without --max-side) is refused before
    anything big is allocated."""
    from depthcli.model import read_checkpoint
    from depthcli.runtime import memory
    from depthcli.runtime.preprocess import processed_size

    p = Problems("memory")
    (tmp_path / "photo.jpg").write_bytes(fc.encode("jpg", fc.photo(6000, 8000), [cv2.IMWRITE_JPEG_QUALITY, 85]))
    (tmp_path / "a.png").write_bytes(fc.encode("png", fc.photo()))
    (tmp_path / "wide.png").write_bytes(fc.encode("png", fc.photo(3, 2000)))
    encoder = read_checkpoint(fuzz_model.safetensors).config.encoder
    import torch

    cpu = torch.device("cpu")
    nh, nw = processed_size(3, 2000, 518)
    wide_fits = memory.forward_bytes(nh, nw, encoder, torch.float32, cpu) + memory.preprocess_bytes(nh, nw) \
        <= (memory.host_available_bytes() or 0)
    model = ["--model", str(fuzz_model.safetensors)]
    runs = run_many([
        {"args": ["image", "photo.jpg", *(["wide.png"] if not wide_fits else []), "-o", tmp_path / "big",
                  "--stats", tmp_path / "stats.jsonl", *model], "timed": True},
        {"args": ["image", "a.png", "-o", tmp_path / "huge", "--size", "20000", *model], "timed": True},
    ], home=fuzz_model.home, cwd=tmp_path)
    big, huge = runs
    common_checks(p, big, 0 if wide_fits else 1, tmp_path, what="8000x6000 at 518")
    check_image_output(p, big, "photo.jpg", tmp_path / "big" / "photo_depth.png", (6000, 8000),
                       "memory: 8000x6000 photo at --size 518")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", big.time_report)
    if m:
        peak = int(m[1]) / 1024
    else:
        peak = max(json.loads(line)["peak_mem_mb"] for line in (tmp_path / "stats.jsonl").read_text().splitlines())
    TOTALS["peak_rss_8000x6000_mib"] = round(peak)
    p.check(peak < 4096, f"8000x6000 photo: peak RSS {peak:.0f} MiB")
    if not wide_fits:
        check_failure(p, big, "wide.png", "not enough memory for a 345338x518 network input",
                      tmp_path / "big" / "wide_depth.png", "memory: 2000x3 at 518 without --max-side")
    common_checks(p, huge, 1, tmp_path, what="--size 20000")
    check_failure(p, huge, "a.png", "cannot prepare: not enough memory for a 26670x20006 network input",
                  tmp_path / "huge" / "a_depth.png", "memory: --size 20000")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", huge.time_report)
    p.check(m is None or int(m[1]) < 1024 * 1024, f"--size 20000 allocated before refusing: {huge.time_report}")
    p.done()
