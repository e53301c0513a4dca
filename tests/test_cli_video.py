"""``depthcli video`` and ``depthcli webcam`` end to end: the installed entry point in a
subprocess with a tiny random checkpoint, on small clips made with OpenCV.

Covered: output frame count / fps / size, frame selection (--start/--end/--stride/--max-frames),
per-frame outputs, both normalisations, stats and the closing fps line, Ctrl-C and SIGTERM
leaving a playable video, broken and truncated inputs, the headless webcam loop with recording,
a missing camera, and the live window under Xvfb (checked from a screenshot).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_helpers import (
    SIZE_ARG,
    lines,
    popen_cli,
    read_xwd,
    run_cli,
    stop_process,
    temp_leftovers,
    video_frame,
    video_info,
    wait_for_lines,
    write_video,
)

FRAMES, FPS, W, H = 24, 25.0, 96, 64
PER_FRAME = re.compile(rf"^frame (?P<i>\d+): {W}x{H} -> 112x70, \d+ ms \(total \d+ ms\), "
                       r"peak (?:RSS|VRAM) \d+ MiB, (?:torch|openvino) \w+ \w+$")


@pytest.fixture
def model_args(tiny_ckpt: str) -> list[str]:
    return ["--model", tiny_ckpt, *SIZE_ARG]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clip.mp4: 24 frames, 25 fps, 96x64 (mp4v); long.mp4: the same for 300 frames."""
    root = tmp_path_factory.mktemp("clips")
    write_video(root / "clip.mp4", FRAMES, FPS, (W, H))
    write_video(root / "long.mp4", 300, FPS, (W, H))
    info = video_info(root / "clip.mp4")
    assert (info.frames, info.fps, info.width, info.height) == (FRAMES, FPS, W, H)
    return root


def video(*args: object, **kwargs: object) -> subprocess.CompletedProcess:
    return run_cli("video", *args, **kwargs)


def assert_ok(proc: subprocess.CompletedProcess, code: int = 0) -> None:
    assert proc.returncode == code, f"exit {proc.returncode}, stderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr


def stats_names(path: Path) -> list[str]:
    return [json.loads(line)["name"] for line in path.read_text().splitlines()]


def decoded_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


# ----------------------------------------------------------------------------------- video
def test_video_same_frames_fps_size_with_stats_and_fps_line(tmp_path: Path, clips: Path,
                                                           model_args: list[str]) -> None:
    proc = video(clips / "clip.mp4", "-o", tmp_path / "out", "--stats", tmp_path / "s.jsonl", *model_args)
    assert_ok(proc)
    out = tmp_path / "out" / "clip_depth.mp4"
    info = video_info(out)
    assert (info.frames, info.fps, info.width, info.height) == (FRAMES, FPS, W, H)
    assert info.first.std() > 10, "flat depth video"
    assert stats_names(tmp_path / "s.jsonl") == [f"frame {i}" for i in range(FRAMES)]
    stats = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert all(s["input_hw"] == [H, W] and s["processed_hw"] == [70, 112] for s in stats)
    assert all(s["infer_ms"] > 0 and (s["device"], s["dtype"]) == ("cpu", "float32") for s in stats)
    err = lines(proc.stderr)
    assert err[0] == f"{clips / 'clip.mp4'}: {W}x{H}, 25 fps, {FRAMES} frames -> {out}", err[0]
    assert sum(bool(PER_FRAME.match(line)) for line in err) == FRAMES
    # one closing line, one end-to-end rate (model-only: 1000 / the median inference ms)
    assert re.fullmatch(rf"{FRAMES} frames: median \d+ ms/frame inference, [\d.]+ frames/s end to end, "
                        r"peak (?:RSS|VRAM) \d+ MiB, (?:torch|openvino) \w+ \w+", err[-1]), err[-1]
    assert sum("end to end" in line or "end-to-end" in line for line in err) == 1, err
    assert temp_leftovers(tmp_path) == [] and temp_leftovers(clips) == []


def test_video_side_by_side_gray_frame_normalisation(tmp_path: Path, clips: Path,
                                                     model_args: list[str]) -> None:
    proc = video(clips / "clip.mp4", "-o", tmp_path, "--side-by-side", "-f", "gray", "--normalize", "frame",
                 "-q", *model_args)
    assert_ok(proc)
    assert proc.stderr == ""
    out = tmp_path / "clip_depth.mp4"
    info = video_info(out)
    assert (info.frames, info.fps, info.width, info.height) == (FRAMES, FPS, 2 * W, H)
    for i, frame in enumerate(decoded_frames(out)[:: FRAMES // 4]):
        left, right = frame[:, :W].astype(int), frame[:, W:].astype(int)
        assert np.abs(left - video_frame(i * (FRAMES // 4), (W, H))).mean() < 12, "left half is not the input"
        spread = np.abs(right - right[..., :1]).max(-1)  # channel disagreement (codec chroma error)
        assert spread.mean() < 5 and np.percentile(spread, 99) <= 10, "depth half is not gray"
        # each frame min..max: the full range is used (up to codec error)
        assert right.min() < 25 and right.max() > 230, (right.min(), right.max())


def test_videos_with_the_same_stem_keep_their_suffix(tmp_path: Path, model_args: list[str]) -> None:
    """a.mp4 and a.avi into one folder: two depth videos (and sidecars), neither overwritten."""
    write_video(tmp_path / "in" / "a.mp4", 4, FPS, (W, H))
    write_video(tmp_path / "in" / "a.avi", 6, FPS, (W, H), fourcc="MJPG")
    write_video(tmp_path / "in" / "b.mp4", 3, FPS, (W, H))
    assert_ok(video(tmp_path / "in" / "a.mp4", tmp_path / "in" / "a.avi", tmp_path / "in" / "b.mp4",
                    "-o", tmp_path / "out", "-q", *model_args))
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["a_avi_depth.json", "a_avi_depth.mp4", "a_mp4_depth.json",
                                                     "a_mp4_depth.mp4", "b_depth.json", "b_depth.mp4"]
    assert [video_info(out / n).frames for n in ("a_mp4_depth.mp4", "a_avi_depth.mp4", "b_depth.mp4")] == [4, 6, 3]


def test_videos_of_the_same_name_in_different_folders_get_distinct_outputs(tmp_path: Path,
                                                                           model_args: list[str]) -> None:
    """#25 item 1 for videos: x/a.mp4 and y/a.mp4 into one -o folder (the rule of jobs.naming)."""
    write_video(tmp_path / "x" / "a.mp4", 3, FPS, (W, H))
    write_video(tmp_path / "y" / "a.mp4", 5, FPS, (W, H))
    proc = video("x/a.mp4", "y/a.mp4", "./x/a.mp4", "-o", "out", *model_args, cwd=tmp_path)  # ./x/a.mp4: once
    assert_ok(proc)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["x_a_mp4_depth.json", "x_a_mp4_depth.mp4",
                                                     "y_a_mp4_depth.json", "y_a_mp4_depth.mp4"]
    assert [video_info(out / n).frames for n in ("x_a_mp4_depth.mp4", "y_a_mp4_depth.mp4")] == [3, 5]
    announced = [line.rsplit(" -> ", 1)[1] for line in lines(proc.stderr) if " frames -> " in line]
    assert announced == ["out/x_a_mp4_depth.mp4", "out/y_a_mp4_depth.mp4"]


@pytest.mark.parametrize(("args", "message"), [
    (["-f", "gray", "--colormap", "turbo"], "--colormap applies only to --format color"),
    (["--frames", "npy", "--no-video", "--crf", "20", "--invert"],
     "--invert, --crf apply only to the video, which --no-video leaves out"),
    (["--fps", "30"], "--fps sets the frame rate of image sequences; clip.mp4 is a video, which keeps its own "
                      "timing"),
], ids=["colormap-gray", "no-video", "fps-video"])
def test_video_options_that_cannot_apply_are_refused(tmp_path: Path, clips: Path, model_args: list[str],
                                                     args: list[str], message: str) -> None:
    """#25 item 14: one line, exit 2, nothing written."""
    proc = video("clip.mp4", "-o", tmp_path / "out", *args, *model_args, cwd=clips)
    assert_ok(proc, code=2)
    assert f"Error: {message}" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_video_start_past_the_end_is_said_before_anything_is_announced(tmp_path: Path, clips: Path,
                                                                       model_args: list[str]) -> None:
    """#25 item 19: --start 100 on a 24-frame clip announced an output and "0 frames processed"
    before its error."""
    proc = video(clips / "clip.mp4", "--start", "100", "-o", tmp_path / "st", *model_args)
    assert_ok(proc, code=1)
    assert lines(proc.stderr) == [f"depthcli: {clips / 'clip.mp4'}: no frames selected: --start 100 is past the "
                                  f"end (it lists {FRAMES} frames)"], proc.stderr
    assert not (tmp_path / "st").exists() or not list((tmp_path / "st").iterdir())


def test_image_outputs_beside_sequence_frames_are_not_frames(tmp_path: Path, model_args: list[str]) -> None:
    """#25 item 2 for sequences: `depthcli image shots/` writes f0_depth.png beside the frames;
    `depthcli video shots/` then takes the frames only, and says what it left out."""
    (tmp_path / "shots").mkdir()
    for i in range(4):
        assert cv2.imwrite(str(tmp_path / "shots" / f"f{i}.png"), video_frame(i))
    assert_ok(run_cli("image", "shots/", "-q", *model_args, cwd=tmp_path))
    assert len(list((tmp_path / "shots").glob("*_depth.png"))) == 4
    proc = video("shots/", "--frames", "npy", *model_args, cwd=tmp_path)
    assert_ok(proc)
    assert video_info(tmp_path / "shots_depth.mp4").frames == 4
    assert len(list((tmp_path / "shots_depth_frames").glob("*.npy"))) == 4
    assert ("depthcli: note: shots/: left out 4 depthcli outputs found among the frames (a %d pattern names "
            "frames exactly)") in lines(proc.stderr), proc.stderr


def test_video_stride_halves_frames_and_fps(tmp_path: Path, clips: Path, model_args: list[str]) -> None:
    assert_ok(video(clips / "clip.mp4", "-o", tmp_path, "--stride", "2", "--stats", tmp_path / "s.jsonl",
                    "-q", *model_args))
    info = video_info(tmp_path / "clip_depth.mp4")
    assert (info.frames, info.fps, info.width, info.height) == (FRAMES // 2, FPS / 2, W, H)
    assert stats_names(tmp_path / "s.jsonl") == [f"frame {i}" for i in range(0, FRAMES, 2)]


def test_video_start_end_frame_numbers(tmp_path: Path, clips: Path, model_args: list[str]) -> None:
    assert_ok(video(clips / "clip.mp4", "-o", tmp_path, "--start", "5", "--end", "15",
                    "--stats", tmp_path / "s.jsonl", "-q", *model_args))
    assert video_info(tmp_path / "clip_depth.mp4").frames == 10
    assert stats_names(tmp_path / "s.jsonl") == [f"frame {i}" for i in range(5, 15)]


def test_video_start_in_seconds_and_max_frames(tmp_path: Path, clips: Path, model_args: list[str]) -> None:
    assert_ok(video(clips / "clip.mp4", "-o", tmp_path, "--start", "0.2s", "--max-frames", "3",
                    "--stats", tmp_path / "s.jsonl", "-q", *model_args))
    info = video_info(tmp_path / "clip_depth.mp4")
    assert (info.frames, info.fps) == (3, FPS)
    assert stats_names(tmp_path / "s.jsonl") == ["frame 5", "frame 6", "frame 7"]  # 0.2 s at 25 fps


def test_video_frames_npy_are_the_raw_depth(tmp_path: Path, clips: Path, tiny_ckpt: str,
                                          model_args: list[str]) -> None:
    import depthcli

    assert_ok(video(clips / "clip.mp4", "-o", tmp_path, "--frames", "npy", "-q", *model_args))
    assert video_info(tmp_path / "clip_depth.mp4").frames == FRAMES
    frames_dir = tmp_path / "clip_depth_frames"
    names = sorted(p.name for p in frames_dir.iterdir())
    assert names == [f"clip_{i:06d}.npy" for i in range(FRAMES)]
    depth = np.load(frames_dir / "clip_000000.npy")
    assert depth.dtype == np.float32 and depth.shape == (H, W)
    first = decoded_frames(clips / "clip.mp4")[0]  # the same decoder, the same pixels
    expected = depthcli.predict(depthcli.load_model(tiny_ckpt, device="cpu"), first, size=70)
    assert np.abs(depth - expected).max() / np.abs(expected).max() <= 1e-6


def test_video_frames_gray16_without_video(tmp_path: Path, clips: Path, model_args: list[str]) -> None:
    assert_ok(video(clips / "clip.mp4", "-o", tmp_path, "--frames", "gray16", "--no-video", "-q",
                    *model_args))
    assert not list(tmp_path.rglob("*.mp4"))
    pngs = sorted((tmp_path / "clip_depth_frames").iterdir())
    assert [p.name for p in pngs] == [f"clip_{i:06d}.png" for i in range(FRAMES)]
    for p in pngs[:: FRAMES // 3]:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint16 and img.shape == (H, W)
        assert img.min() == 0 and img.max() == 65535
    assert temp_leftovers(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_video_interrupted_keeps_a_playable_video(tmp_path: Path, clips: Path, model_args: list[str],
                                                  sig: signal.Signals) -> None:
    stats, err_path = tmp_path / "s.jsonl", tmp_path / "stderr.txt"
    proc = popen_cli("video", clips / "long.mp4", "-o", tmp_path / "out", "--stats", stats, *model_args,
                     stderr_path=err_path)
    try:
        wait_for_lines(proc, stats, 5)
        assert proc.poll() is None, f"finished before the signal:\n{err_path.read_text()}"
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
    finally:
        stop_process(proc)
    err = err_path.read_text()
    assert code == 130, f"exit {code}:\n{err}"
    assert "Traceback" not in err, err
    done = re.search(r"interrupted after (\d+) frames; (.+) finalised and kept", err)
    assert done, err
    n = int(done[1])
    assert 5 <= n < 300
    out = tmp_path / "out" / "long_depth.mp4"
    assert done[2] == str(out)
    info = video_info(out)
    assert (info.fps, info.width, info.height) == (FPS, W, H)
    assert info.frames == n  # every frame reported done is in the video
    assert len(stats.read_text().splitlines()) == n
    assert temp_leftovers(tmp_path) == []


def test_video_random_bytes_and_missing_file(tmp_path: Path, model_args: list[str]) -> None:
    (tmp_path / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    proc = video("garbage.mp4", "-o", "out", *model_args, cwd=tmp_path)
    assert_ok(proc, code=5)
    assert lines(proc.stderr) == ["depthcli: garbage.mp4: cannot open: not a video, an unsupported codec, "
                                  "or a truncated file"], proc.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert temp_leftovers(tmp_path) == []
    proc = video("missing.mp4", *model_args, cwd=tmp_path)
    assert_ok(proc, code=5)
    assert lines(proc.stderr) == ["depthcli: missing.mp4: no such file"]


def test_video_truncated_keeps_decoded_frames(tmp_path: Path, model_args: list[str]) -> None:
    # MJPG in AVI decodes frame by frame, so a cut file still opens and yields its first frames
    src = write_video(tmp_path / "src.avi", 30, FPS, (W, H), fourcc="MJPG")
    data = src.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) * 2 // 3])
    proc = video("cut.avi", "-o", "out", "--stats", "s.jsonl", "-q", *model_args, cwd=tmp_path)
    # exit code: 5 today ("could not be read at all" in the docs); 1 would fit a partial read
    # better. Either way non-zero, and the decoded part is kept.
    assert proc.returncode in (1, 5), proc.stderr
    assert "Traceback" not in proc.stderr
    err = lines(proc.stderr)
    assert len(err) == 1, err  # no FFmpeg chatter ("[mjpeg @ ...] overread")
    stopped = re.fullmatch(r"depthcli: cut\.avi: stopped after (\d+) frames: decode error "
                           r"\(truncated or corrupt file; it lists 30 frames\)", err[0])
    assert stopped, err
    n = int(stopped[1])
    assert 0 < n < 30
    assert video_info(tmp_path / "out" / "cut_depth.mp4").frames == n
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == n
    assert temp_leftovers(tmp_path) == []


# ----------------------------------------------------------------------------------- webcam
def test_webcam_headless_from_a_file_with_recording(tmp_path: Path, clips: Path,
                                                    model_args: list[str]) -> None:
    proc = run_cli("webcam", "--source", clips / "clip.mp4", "--no-window", "--max-frames", "5",
                   "--record", "rec.mp4", *model_args, cwd=tmp_path)
    assert_ok(proc)
    err = lines(proc.stderr)
    assert [int(m["i"]) for line in err if (m := PER_FRAME.match(line))] == list(range(5)), err
    assert "depthcli: recording saved to rec.mp4" in err
    assert re.match(r"^5 frames: median \d+ ms/frame inference", err[-1]), err
    info = video_info(tmp_path / "rec.mp4")
    assert (info.frames, info.fps, info.width, info.height) == (5, FPS, 2 * W, H)
    recorded = decoded_frames(tmp_path / "rec.mp4")
    for i, frame in enumerate(recorded):
        assert np.abs(frame[:, :W].astype(int) - video_frame(i, (W, H))).mean() < 12, i
    assert recorded[0][:, W:].std() > 10, "flat depth half"
    assert temp_leftovers(tmp_path) == []


def test_webcam_missing_camera(tmp_path: Path, model_args: list[str]) -> None:
    proc = run_cli("webcam", "--camera", "7", "--no-window", *model_args, cwd=tmp_path)
    assert_ok(proc, code=5)
    assert len(lines(proc.stderr)) == 1, proc.stderr
    assert "camera 7" in proc.stderr and proc.stderr.startswith("depthcli: error: ")


# ----------------------------------------------------------------------------------- window
def _green_frame(i: int, size: tuple[int, int]) -> np.ndarray:
    """Green-dominated frames: nothing like any inferno colour, so the panes are told apart."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    blue, green, red = 20 + 30 * np.sin((x + 3 * i) / 13), 140 + 100 * y / (h - 1), 30 + 20 * np.cos(x / 17)
    img = np.stack([blue, green, red], -1)
    img = img.clip(0, 255).astype(np.uint8)
    cv2.circle(img, ((40 + 4 * i) % w, h * 2 // 3), h // 6, (10, 90, 10), -1)
    return img


def _start_xvfb(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """Xvfb on a free display it picks itself (-displayfd), ready once it has written it."""
    read_fd, write_fd = os.pipe()
    log = open(tmp_path / "xvfb.log", "wb")  # noqa: SIM115 - closed below
    try:
        xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1024x768x24",
                                 "-nolisten", "tcp", "-br"], pass_fds=(write_fd,), stdout=log, stderr=log)
    finally:
        os.close(write_fd)
        log.close()
    number = b""
    try:
        deadline = time.monotonic() + 30
        while not number.endswith(b"\n") and time.monotonic() < deadline and xvfb.poll() is None:
            chunk = os.read(read_fd, 16)
            if not chunk:
                break
            number += chunk
    finally:
        os.close(read_fd)
    if not number.strip().isdigit():
        stop_process(xvfb)
        pytest.fail(f"Xvfb did not start: {(tmp_path / 'xvfb.log').read_text()}")
    return xvfb, f":{number.strip().decode()}"


def _find_panes(shot: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The input (green) pane and the equally wide pane right of it, or None if not shown."""
    b, g, r = (shot[..., k].astype(int) for k in range(3))
    green = (g > 120) & (g > r + 60) & (g > b + 60)
    if green.sum() < 2000:
        return None
    cols, rows = green.sum(0), green.sum(1)
    xs, ys = np.flatnonzero(cols > 0.3 * cols.max()), np.flatnonzero(rows > 0.3 * rows.max())
    x0, x1, y0, y1 = xs[0], xs[-1] + 1, ys[0], ys[-1] + 1
    width = x1 - x0
    if x1 + width > shot.shape[1]:
        return None
    return shot[y0:y1, x0:x1], shot[y0:y1, x1 : x1 + width]


def _inferno_distance(pixels: np.ndarray) -> np.ndarray:
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_INFERNO)[:, 0].astype(int)
    flat = pixels.reshape(-1, 3).astype(int)
    return np.sqrt(((flat[:, None, :] - lut[None]) ** 2).sum(-1)).min(1)


def _opencv_has_gui() -> bool:
    from depthcli.io.window import gui_backend

    return gui_backend() is not None


@pytest.mark.skipif(shutil.which("Xvfb") is None or shutil.which("xwd") is None,
                    reason="needs Xvfb and xwd (apt-get install xvfb x11-apps)")
@pytest.mark.skipif(not _opencv_has_gui(), reason="this OpenCV is built without GUI support (headless)")
def test_webcam_window_under_xvfb(tmp_path: Path, model_args: list[str]) -> None:
    size = (320, 240)
    clip = write_video(tmp_path / "green.mp4", 60, FPS, size, frame=_green_frame)
    inputs = [_green_frame(i, size) for i in range(40)]
    xvfb, display = _start_xvfb(tmp_path)
    proc = None
    try:
        stats, err_path = tmp_path / "s.jsonl", tmp_path / "stderr.txt"
        proc = popen_cli("webcam", "--source", clip, "--max-frames", "40", "--stats", stats, *model_args,
                         env={"DISPLAY": display}, stderr_path=err_path)
        panes, shot = None, None
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            if not stats.exists() or not stats.read_text():
                time.sleep(0.02)
                continue
            dump = subprocess.run(["xwd", "-root", "-silent", "-display", display], capture_output=True,
                                  timeout=30)
            assert dump.returncode == 0, dump.stderr
            shot = read_xwd(dump.stdout)
            panes = _find_panes(shot)
            if panes is not None:
                break
        assert shot is not None, f"no frame was processed:\n{err_path.read_text()}"
        cv2.imwrite(str(tmp_path / "screenshot.png"), shot)
        assert panes is not None, f"no depth window in the screenshot {tmp_path / 'screenshot.png'}"
        code = proc.wait(timeout=90)
        err = err_path.read_text()
        assert code == 0, f"exit {code}:\n{err}"
        assert "Traceback" not in err and err.strip() == "", err  # the window shows the stats instead
        assert len(stats.read_text().splitlines()) == 40
    finally:
        if proc is not None:
            stop_process(proc)
        stop_process(xvfb)

    left, right = panes
    h, w = left.shape[:2]
    assert abs(w / h - size[0] / size[1]) < 0.1, f"input pane {w}x{h} lost the aspect ratio"
    body = slice(h // 3, h)  # below the text overlay in the top-left corner
    # left: one of the input frames, scaled to the pane
    scaled = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)[body] for f in inputs]
    best = min(np.abs(s.astype(int) - left[body]).mean() for s in scaled)
    assert best < 15, f"left pane differs from every input frame by {best:.1f} on average"
    # right: inferno colours, with real variation, and none of the input's green
    far = _inferno_distance(right[body])
    assert (far < 40).mean() > 0.9, f"only {(far < 40).mean():.0%} of the right pane is inferno-coloured"
    assert right[body].std() > 20, "flat depth pane"
    b, g, r = (right[body][..., k].astype(int) for k in range(3))
    assert ((g > r + 60) & (g > b + 60)).mean() < 0.01, "the input's green in the depth pane"
