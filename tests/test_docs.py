"""The example commands of README.md and docs/*.md run as written (#25: "so the pages cannot
drift from the tool again").

Every line of a code block that starts with ``depthcli `` (after ``VAR=value`` prefixes) is an
example. Each one either runs here, through bash, in a fresh copy of a small workspace that has
the files the examples name (``photo.jpg``, ``clip.mp4``, ``shots/``, ``out/photo_depth.png``,
...) and must exit 0 without a traceback; or it matches one entry of ``CANNOT_RUN_HERE``, which
says why (a cluster, a server, a camera, the network, a GPU) and which test covers it instead.
A new example is run unless it is added there: none is skipped silently.

What is changed to run them here, and only that: the model is a tiny random one (registry names
the examples use are mapped to tiny stand-ins of the same kind, and ``$DEPTHCLI_MODEL`` is the
tiny model for the examples that name none), and ``image``/``video`` get ``--size 70`` so each
takes milliseconds per image. Everything else on the line is the page's.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_helpers import cli_env, video_frame, write_image, write_video

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# (pattern on the command, why it cannot run here and what covers it instead)
CANNOT_RUN_HERE = [
    (r"--ray\b", "needs a Ray cluster (tests/test_cluster.py runs the --ray paths on a local one)"),
    (r"^depthcli serve\b", "a server that runs until stopped (tests/test_serve.py starts and stops real ones)"),
    (r"--server\b", "needs a running depthcli serve (tests/test_serve.py, the --server client)"),
    (r"^depthcli webcam\b", "needs a camera and a display (tests/test_cli_video.py: a file source, Xvfb)"),
    (r"\b(s3|gs)://", "needs an object store (tests/test_cluster.py runs one locally)"),
    (r"\b(rtsp|rtmp|https?)://", "needs a live stream (tests/test_cli_vda.py streams a file through webcam --source)"),
    (r"^depthcli download\b", "downloads from huggingface.co (tests/test_hub.py runs a local hub)"),
    (r"--device (cuda|mps)\b|--fp16\b", "needs a GPU (tests/test_cuda.py, scripts/gpu_check.sh)"),
]
FAST = ("--size", "70")
PARALLEL = 2  # CLI runs at once: each spends most of its time importing torch


@dataclass(frozen=True)
class Example:
    page: str  # README.md, docs/cli.md, ...
    line: int
    command: str  # as written, without its trailing comment

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def examples() -> list[Example]:
    """The example command lines of every page: code-block lines (fenced or indented) that
    start with ``depthcli`` (after ``VAR=value`` prefixes), trailing ``# comments`` dropped."""
    found = []
    for page in PAGES:
        fenced = False
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip().startswith("```"):
                fenced = not fenced
                continue
            if not (fenced or line.startswith("    ")):
                continue
            text = re.sub(r"\s+#\s.*$", "", line.strip())
            if re.match(r"^([A-Z_][A-Z0-9_]*=\S*\s+)*depthcli\s", text):
                found.append(Example(page.relative_to(ROOT).as_posix(), number, text))
    return found


def why_not_here(command: str) -> str | None:
    bare = re.sub(r"^([A-Z_][A-Z0-9_]*=\S*\s+)*", "", command)
    for pattern, why in CANNOT_RUN_HERE:
        if re.search(pattern, bare):
            return why
    return None


def test_the_pages_have_examples_and_most_run_here() -> None:
    found = examples()
    runnable = [e for e in found if why_not_here(e.command) is None]
    assert len(found) >= 30 and len(runnable) >= 15, [e.id for e in found]
    for page in ("README.md", "docs/formats.md", "docs/models.md", "docs/video.md"):
        assert any(e.page == page for e in runnable), page


# ----------------------------------------------------------------------------------- workspace
@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, tiny_model, tiny_ckpt: str) -> Path:  # noqa: ANN001
    """The files the examples name, made small."""
    root = tmp_path_factory.mktemp("docs-workspace")
    for name, seed in (("photo.jpg", 0), ("a.jpg", 1), ("room.jpg", 2)):
        write_image(root / name, 48, 64, seed=seed)
    write_video(root / "clip.mp4", 6, 25.0, (96, 64))
    (root / "shots").mkdir()
    for i in range(4):  # frames for 'shots/frame_%05d.png', shots/ and 'shots/*.exr'
        frame = video_frame(i)
        assert cv2.imwrite(str(root / "shots" / f"frame_{i:05d}.png"), frame)
        _write_colour_exr(root / "shots" / f"frame_{i:05d}.exr", frame)
    shutil.copy(tiny_model.unnamed_pth, root / "depth_anything_v2_vits.pth")  # the name says V2
    shutil.copytree(Path(tiny_ckpt).parent / "hf", root / "my-transformers-folder")
    runs = [subprocess.Popen(["depthcli", "image", "photo.jpg", "-o", "out", "-f", fmt, "-q", *FAST], cwd=root,
                             env=_env(tiny_ckpt), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for fmt in ("color", "exr")]  # what `depthcli info out/photo_depth.png|exr` reads, made at once
    for proc in runs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    return root


def _write_colour_exr(path: Path, bgr8: np.ndarray) -> None:
    import OpenEXR

    rgb = (bgr8[..., ::-1].astype(np.float32) / 255.0) ** 2.2  # scene-linear, as a renderer writes them
    channels = {name: np.ascontiguousarray(rgb[..., i]) for i, name in enumerate("RGB")}
    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}, channels).write(str(path))


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory, tiny_ckpt: str) -> dict[str, str]:
    """Registry names the examples use -> tiny checkpoints of the same kind (relative, metric)."""
    from depthcli.model import build_model, read_checkpoint, save_safetensors

    folder = tmp_path_factory.mktemp("docs-models")
    metric = folder / "tiny-metric.safetensors"
    save_safetensors(build_model(read_checkpoint(tiny_ckpt, max_depth=20.0)), metric)
    da3_metric, vda = folder / "tiny-da3metric.safetensors", folder / "tiny-vda.safetensors"
    save_safetensors(_tiny_random("da3"), da3_metric)
    save_safetensors(_tiny_random("vda"), vda)
    return {"v2-small": tiny_ckpt, "v2-base": tiny_ckpt, "v2-metric-indoor-small": str(metric),
            "v2-metric-outdoor-small": str(metric), "da3metric-large": str(da3_metric), "vda-small": str(vda)}


def _tiny_random(family: str):  # noqa: ANN202 - a torch module
    """A tiny random network of the family (the examples only need it to run, not to be right):
    DA3METRIC's architecture (sky head, metres from the focal length), or Video Depth Anything."""
    from dataclasses import replace

    import torch
    from da3_reference import tiny_config

    from depthcli.model.configs import EncoderConfig
    from depthcli.model.depth_anything_3.model import DepthAnything3
    from depthcli.model.video_depth_anything.config import VDAConfig
    from depthcli.model.video_depth_anything.model import VideoDepthAnything

    torch.manual_seed(0)
    if family == "da3":
        return DepthAnything3(replace(tiny_config("sky"), preset="tiny-metric", metric=True)).eval()
    return VideoDepthAnything(VDAConfig(EncoderConfig("tiny", 64, 4, 2, 32, (16, 32, 64, 64), (0, 1, 2, 3)))).eval()


def _env(tiny_ckpt: str) -> dict[str, str]:
    env = cli_env({"DEPTHCLI_MODEL": tiny_ckpt})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this venv's depthcli
    return env


def runnable_form(command: str, stand_ins: dict[str, str]) -> str:
    """The page's command with the tiny model and ``--size 70``; nothing else changed."""
    def model(m: re.Match) -> str:
        return f"{m[1]} {stand_ins.get(m[2], m[2])}"

    command = re.sub(r"(-m|--model)\s+(\S+)", model, command)
    return re.sub(r"\bdepthcli (image|video)\b", lambda m: f"{m[0]} {' '.join(FAST)}", command)


# ----------------------------------------------------------------------------------- the check
def test_every_example_that_can_run_here_exits_0(workspace: Path, stand_ins: dict[str, str], tiny_ckpt: str,
                                                 tmp_path: Path) -> None:
    todo: dict[str, list[Example]] = {}  # one run per distinct command line
    for example in examples():
        if why_not_here(example.command) is None:
            todo.setdefault(example.command, []).append(example)

    def run(command: str) -> tuple[str, subprocess.CompletedProcess]:
        where = Path(tempfile.mkdtemp(dir=tmp_path)) / "here"
        shutil.copytree(workspace, where)
        proc = subprocess.run(["bash", "-c", runnable_form(command, stand_ins)], cwd=where, env=_env(tiny_ckpt),
                              capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
        return command, proc

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        results = list(pool.map(run, todo))
    failures = []
    for command, proc in results:
        if proc.returncode != 0 or "Traceback" in proc.stderr:
            where = ", ".join(e.id for e in todo[command])
            failures.append(f"{where}: `{command}` exited {proc.returncode}:\n{proc.stderr.strip()[-800:]}")
    assert not failures, "\n\n".join(failures)
