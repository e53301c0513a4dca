"""SIGTERM at any moment of a run ends it as documented (#25 item 3; docs/exit-codes.md,
"Interrupts"): exit 130 with one line, or 0 once the last output was written; never a
traceback, never exit 143, no temporary file, every output that exists whole.

The installed ``depthcli`` in a subprocess, signalled while it starts (imports, model load),
after the Nth line of a batch, after its last image, and while it closes; ``video``, ``webcam``
and ``serve`` at fewer moments (the middle of a video is test_cli_video.py's, a request in
flight test_serve.py's).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import cv2
import pytest
from cli_helpers import lines, popen_cli, stop_process, temp_leftovers, video_info, write_image, write_video

INTERRUPTED = "depthcli: error: interrupted; outputs written so far are complete"
IMAGES = 6
IMAGE_SIZE = ("--size", "280")  # ~60 ms an image with the tiny model: a batch long enough to land in


def wait_for_stderr(proc: subprocess.Popen, path: Path, predicate, timeout: float = 90) -> list[str]:  # noqa: ANN001
    """The stderr lines once ``predicate(lines)`` holds (or the process ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = lines(path.read_text()) if path.exists() else []
        if predicate(got) or proc.poll() is not None:
            return got
        time.sleep(0.01)
    raise AssertionError(f"timed out; stderr so far:\n{path.read_text() if path.exists() else ''}")


def signalled(args: list[object], cwd: Path, when, *, sig: int = signal.SIGTERM) -> tuple[int, str]:  # noqa: ANN001
    """Run ``depthcli ARGS``, send ``sig`` when ``when(lines)`` holds (a number: seconds after
    the start), and return (exit code, stderr)."""
    err = cwd / f"stderr-{time.monotonic_ns()}.txt"
    proc = popen_cli(*args, cwd=cwd, stderr_path=err)
    try:
        if isinstance(when, (int, float)):
            time.sleep(when)
        else:
            wait_for_stderr(proc, err, when)
        if proc.poll() is None:
            proc.send_signal(sig)
        code = proc.wait(timeout=120)
    finally:
        stop_process(proc)
    return code, err.read_text()


def assert_ended_as_documented(code: int, err: str, *, interrupted_line: str = INTERRUPTED) -> None:
    assert code in (0, 130), f"exit {code} (143: killed by the signal):\n{err}"
    assert "Traceback" not in err and "Exception ignored" not in err and "Aborted!" not in err, err
    if code == 130:
        assert lines(err)[-1].startswith(interrupted_line), err


def image_lines(got: list[str]) -> list[str]:
    return [line for line in got if " ms (total " in line]


# ----------------------------------------------------------------------------------- image
@pytest.fixture
def batch(tmp_path: Path) -> Path:
    for i in range(IMAGES):
        write_image(tmp_path / "in" / f"p{i}.png", 64, 64, seed=i)
    return tmp_path


MOMENTS = {
    "starting": 0.3,  # importing, parsing, loading the model
    "after-1st": lambda got: len(image_lines(got)) >= 1,
    "after-3rd": lambda got: len(image_lines(got)) >= 3,
    "after-last": lambda got: len(image_lines(got)) >= IMAGES,  # the summary and the exit to come
    "closing": lambda got: any(" images/s end to end" in line for line in got),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_image_batch_signalled_at_any_moment_ends_as_documented(batch: Path, tiny_ckpt: str, moment: str) -> None:
    code, err = signalled(["image", "in/", "-o", "out", "--model", tiny_ckpt, *IMAGE_SIZE], batch, MOMENTS[moment])
    assert_ended_as_documented(code, err)
    out = batch / "out"
    written = sorted(out.iterdir()) if out.exists() else []
    assert temp_leftovers(batch) == [], temp_leftovers(batch)
    for path in written:  # every output there is whole: a PNG that decodes, with its metadata
        assert path.name.endswith("_depth.png") and cv2.imread(str(path)) is not None, path
        assert b"tEXtdepthcli\0" in path.read_bytes()[:200], path
    done = [line.rsplit(" -> ", 1)[1] for line in image_lines(lines(err))]
    assert {Path(d).name for d in done} <= {p.name for p in written}  # each reported output exists
    if code == 0:
        assert len(written) == IMAGES
    if moment == "starting":
        assert code == 130 and written == [], err
    if moment == "closing":
        assert code == 0, err  # everything was written: a late signal changes nothing


def test_image_batch_ctrl_c_while_loading_says_the_same(batch: Path, tiny_ckpt: str) -> None:
    code, err = signalled(["image", "in/", "-o", "out", "--model", tiny_ckpt, *IMAGE_SIZE], batch, 0.3,
                          sig=signal.SIGINT)
    assert code == 130, err
    assert_ended_as_documented(code, err)


# ----------------------------------------------------------------------------------- video
@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.mp4", 40, 25.0, (96, 64))


@pytest.mark.parametrize("moment", ["starting", "closing"])
def test_video_signalled_while_starting_or_closing(tmp_path: Path, clip: Path, tiny_ckpt: str, moment: str) -> None:
    when = 0.3 if moment == "starting" else (lambda got: any(" frames/s end to end" in line for line in got))
    code, err = signalled(["video", clip, "-o", "out", "--model", tiny_ckpt, "--size", "70"], tmp_path, when)
    assert_ended_as_documented(code, err)
    assert temp_leftovers(tmp_path) == []
    result = tmp_path / "out" / "clip_depth.mp4"
    if moment == "starting":
        assert code == 130 and not result.exists(), err
    else:
        assert code == 0, err
        assert video_info(result).frames == 40 and (tmp_path / "out" / "clip_depth.json").is_file()


# ----------------------------------------------------------------------------------- webcam
def test_webcam_signalled_midway_finalises_its_recording(tmp_path: Path, tiny_ckpt: str) -> None:
    clip = write_video(tmp_path / "clip.mp4", 300, 25.0, (96, 64))
    code, err = signalled(["webcam", "--source", clip, "--no-window", "--record", "rec.mp4", "--model", tiny_ckpt,
                           "--size", "70"], tmp_path, lambda got: sum(line.startswith("frame ") for line in got) >= 5)
    assert code == 130, err
    assert_ended_as_documented(code, err, interrupted_line=INTERRUPTED)
    assert temp_leftovers(tmp_path) == []
    assert video_info(tmp_path / "rec.mp4").frames >= 5  # the recording, finalised and playable


# ----------------------------------------------------------------------------------- serve
def test_serve_signalled_while_loading_and_once_stopped(tmp_path: Path, tiny_ckpt: str) -> None:
    pytest.importorskip("uvicorn")
    args = ["serve", "--port", "0", "--model", tiny_ckpt, "--size", "70"]
    code, err = signalled(args, tmp_path, 0.3)
    assert code == 130, err
    assert_ended_as_documented(code, err)
    # right after it says it serves (before uvicorn's loop has started): the first signal stops it
    # gracefully (0); one more after it has stopped changes nothing
    err_path = tmp_path / "serve.txt"
    proc = popen_cli(*args, cwd=tmp_path, stderr_path=err_path)
    try:
        wait_for_stderr(proc, err_path, lambda got: any(" at http://" in line for line in got))
        proc.send_signal(signal.SIGTERM)
        wait_for_stderr(proc, err_path, lambda got: any("every admitted request was answered" in line
                                                          for line in got))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        stop_process(proc)
    assert_ended_as_documented(code, err_path.read_text())
    assert code == 0, err_path.read_text()
