"""``depthcli video`` through PyAV: H.264 output with the source's sound and timestamps, image
sequences in, and the same guarantees on interrupt. Clips are made here with PyAV (a tone on
the sound track, irregular timestamps), tiny (96x64, <= 24 frames), and checked by reading the
outputs back with PyAV (streams, codecs, timestamps, sound) and OpenCV (what users decode).
"""
from __future__ import annotations

import re
import signal
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from cli_helpers import (
    SIZE_ARG,
    lines,
    popen_cli,
    run_cli,
    stop_process,
    temp_leftovers,
    video_frame,
    video_info,
    wait_for_lines,
)

FRAMES, FPS, W, H = 24, 25, 96, 64
SR = 48000  # sample rate of the test tone
AAC_PACKET_S = 1024 / SR  # a copied AAC sound can only be cut at packet boundaries


# ----------------------------------------------------------------------------------- clips
def tone(n_samples: int, start: int = 0) -> np.ndarray:
    """440 Hz for the first half second, 880 Hz after: where a cut lands can be heard (and tested)."""
    t = (np.arange(n_samples) + start) / SR
    return (0.3 * np.sin(2 * np.pi * np.where(t < 0.5, 440, 880) * t)).astype(np.float32)


def make_clip(path: Path, n: int = FRAMES, *, fps: int = FPS, fmt: str = "mp4", vcodec: str = "libx264",
              audio: str | None = "aac", times: list[Fraction] | None = None, size: tuple[int, int] = (W, H),
              time_base: Fraction | None = None) -> Path:
    """A clip of ``video_frame`` pictures, with a stereo tone as long as the video (``audio``:
    its codec, or None), at ``fps`` or at the given frame ``times`` (seconds: variable rate)."""
    tb = time_base or Fraction(1, fps)
    with av.open(str(path), "w", format=fmt) as c:
        v = c.add_stream(vcodec, rate=fps)
        v.width, v.height, v.pix_fmt = size[0], size[1], "yuv420p"
        v.time_base = v.codec_context.time_base = tb
        a = c.add_stream(audio, rate=SR, layout="stereo") if audio else None
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(video_frame(i, size), format="bgr24")
            frame.pts = round((times[i] if times else Fraction(i, fps)) / tb)
            frame.time_base = tb
            for p in v.encode(frame):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None:
            end = times[-1] + (times[-1] - times[-2]) if times else Fraction(n, fps)
            samples, fmt_name = round(end * SR), a.codec_context.format.name
            for s in range(0, samples, 1000):
                block = tone(min(1000, samples - s), s)
                data = np.stack([block, block]) if fmt_name == "fltp" else \
                    (np.stack([block, block], 1).reshape(1, -1) * 32767).astype(np.int16)
                af = av.AudioFrame.from_ndarray(data, format=fmt_name, layout="stereo")
                af.sample_rate, af.pts, af.time_base = SR, s, Fraction(1, SR)
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def probe(path: Path) -> dict:
    """Streams of a file as PyAV reads them: codecs, decoded frame times, sound span."""
    out: dict = {}
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        out["vcodec"], out["pix_fmt"] = v.codec_context.name, v.codec_context.format.name
        out["size"], out["rate"] = (v.codec_context.width, v.codec_context.height), v.average_rate
        out["times"] = [f.pts * v.time_base for f in c.decode(v)]
    with av.open(str(path)) as c:
        if not c.streams.audio:
            out["audio"] = None
            return out
        a = c.streams.audio[0]
        frames = list(c.decode(a))
        first = frames[0].pts * a.time_base
        samples = np.concatenate([f.to_ndarray()[0] for f in frames]) if frames else np.zeros(0)
        out["audio"] = {"codec": a.codec_context.name, "start": first, "samples": samples,
                        "seconds": len(samples) / a.codec_context.sample_rate}
    return out


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / SR)[spectrum.argmax()])


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("av-clips")
    make_clip(root / "tone.mp4")  # H.264 + AAC: the sound is copied
    make_clip(root / "pcm.mkv", fmt="matroska", audio="pcm_s16le")  # PCM cannot go into MP4: AAC
    # variable frame rate: irregular gaps on a 90 kHz clock, no common frame duration
    gaps = [Fraction(g, 90000) for g in (3000, 3003, 1500, 6006, 3000, 4500, 2002, 3000, 3600, 2400, 3000)]
    vfr = [sum(gaps[:i], Fraction(0)) for i in range(len(gaps) + 1)]
    make_clip(root / "vfr.mp4", len(vfr), times=vfr, time_base=Fraction(1, 90000), audio=None)
    make_clip(root / "odd.mp4", 6, size=(W - 1, H - 1), vcodec="mpeg4", audio=None)
    return root


@pytest.fixture
def model_args(tiny_ckpt: str) -> list[str]:
    return ["--model", tiny_ckpt, *SIZE_ARG]


def video(*args: object, **kwargs: object):  # noqa: ANN201
    return run_cli("video", *args, **kwargs)


def errors(proc) -> list[str]:  # noqa: ANN001
    """stderr lines but the notes (a backend's first-use note may come before ours)."""
    return [line for line in lines(proc.stderr) if not line.startswith("depthcli: note: ")]


def assert_ok(proc, code: int = 0) -> None:  # noqa: ANN001
    assert proc.returncode == code, f"exit {proc.returncode}, stderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr


# ----------------------------------------------------------------------------------- io level
def test_reader_pixels_and_times_match_opencv(clips: Path) -> None:
    """The same pixels OpenCV decodes (the depth of a frame does not depend on the reader),
    and each frame's own timestamp."""
    from depthcli.io.video.pyav import AvVideoReader

    cap, by_cv = cv2.VideoCapture(str(clips / "tone.mp4")), []
    while (got := cap.read())[0]:
        by_cv.append(got[1])
    with AvVideoReader(clips / "tone.mp4") as reader:
        frames = list(reader)
        assert (reader.rate, reader.frame_count, reader.size) == (FPS, FRAMES, (W, H))
        assert reader.audio is not None and reader.audio.codec == "aac" and reader.audio.copied
        assert [reader.time_of(i) for i, _ in frames] == [Fraction(i, FPS) for i in range(FRAMES)]
        assert reader.seek(10) and [i for i, _ in reader][:2] == [10, 11]
    assert len(frames) == len(by_cv) == FRAMES
    assert all(np.array_equal(f, c) for (_, f), c in zip(frames, by_cv, strict=True))


def test_rotated_phone_video_is_turned_upright_like_opencv(tmp_path: Path) -> None:
    from depthcli.io.video.pyav import AvVideoReader

    path = tmp_path / "rot.mp4"
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        if not hasattr(v, "set_display_rotation"):
            pytest.skip("this PyAV cannot write a display rotation")
        v.set_display_rotation(90)
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(video_frame(i), format="bgr24")
            frame.pts = i
            for p in v.encode(frame):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
    cap, by_cv = cv2.VideoCapture(str(path)), []
    while (got := cap.read())[0]:
        by_cv.append(got[1])
    with AvVideoReader(path) as reader:
        assert reader.size == (H, W)
        assert all(np.array_equal(f, c) for (_, f), c in zip(reader, by_cv, strict=True))


# ----------------------------------------------------------------------------------- video + sound
def test_h264_output_keeps_frames_rate_and_sound(tmp_path: Path, clips: Path, model_args: list[str]) -> None:
    proc = video(clips / "tone.mp4", clips / "pcm.mkv", "-o", tmp_path, *model_args)
    assert_ok(proc)
    assert "pcm_s16le cannot go into MP4 as it is; re-encoded as AAC" in proc.stderr
    for name in ("tone", "pcm"):
        out = tmp_path / f"{name}_depth.mp4"
        info = video_info(out)  # what OpenCV (and so most tools) sees
        assert (info.frames, info.fps, info.width, info.height) == (FRAMES, FPS, W, H)
        assert info.first.std() > 10, "flat depth video"
        got = probe(out)
        assert (got["vcodec"], got["pix_fmt"], got["rate"]) == ("h264", "yuv420p", FPS)
        assert got["times"] == [Fraction(i, FPS) for i in range(FRAMES)]
        sound = got["audio"]
        assert sound is not None and sound["codec"] == "aac"
        assert abs(sound["seconds"] - FRAMES / FPS) <= AAC_PACKET_S, sound["seconds"]
        assert 430 < dominant_hz(sound["samples"][: SR // 4]) < 450  # the tone, at its place
        assert 870 < dominant_hz(sound["samples"][-SR // 4:]) < 890
    # AAC in MP4 is copied packet for packet, not re-encoded
    assert audio_packets(tmp_path / "tone_depth.mp4") == audio_packets(clips / "tone.mp4")
    assert temp_leftovers(tmp_path) == []


def test_start_end_trim_the_sound_with_the_frames(tmp_path: Path, clips: Path, model_args: list[str]) -> None:
    # frames 10..19 = 0.4 s .. 0.8 s: the tone changes from 440 to 880 Hz at 0.5 s, 0.1 s in
    proc = video(clips / "tone.mp4", clips / "pcm.mkv", "-o", tmp_path, "--start", "0.4s", "--end", "20", "-q",
                 *model_args)
    assert_ok(proc)
    for name, slack in (("tone", AAC_PACKET_S), ("pcm", 1 / SR)):  # copied: to the packet; AAC: the sample
        got = probe(tmp_path / f"{name}_depth.mp4")
        assert got["times"] == [Fraction(i, FPS) for i in range(10)]
        sound = got["audio"]
        assert abs(sound["start"]) <= slack, (name, sound["start"])
        # FFmpeg's decoder does not cut the encoder's padding at the end: up to a packet more
        assert -slack <= sound["seconds"] - 0.4 <= AAC_PACKET_S, (name, sound["seconds"])
        first, rest = sound["samples"][: int(0.08 * SR)], sound["samples"][int(0.12 * SR):]
        assert 420 < dominant_hz(first) < 460 and 860 < dominant_hz(rest) < 900, name


def test_stride_keeps_the_timing_so_the_sound_stays(tmp_path: Path, clips: Path, model_args: list[str]) -> None:
    assert_ok(video(clips / "tone.mp4", "-o", tmp_path, "--stride", "3", "-q", *model_args))
    got = probe(tmp_path / "tone_depth.mp4")
    assert got["times"] == [Fraction(i, FPS) for i in range(0, FRAMES, 3)]  # each frame where it was
    assert got["rate"] == Fraction(FPS, 3)
    assert abs(got["audio"]["seconds"] - FRAMES / FPS) <= AAC_PACKET_S
    assert_ok(video(clips / "tone.mp4", "-o", tmp_path / "mute", "--no-audio", "-q", *model_args))
    assert probe(tmp_path / "mute" / "tone_depth.mp4")["audio"] is None


def test_variable_frame_rate_timestamps_are_kept(tmp_path: Path, clips: Path, model_args: list[str]) -> None:
    with av.open(str(clips / "vfr.mp4")) as c:
        source = [f.pts * c.streams.video[0].time_base for f in c.decode(video=0)]
    assert len(set(np.diff(source))) > 3  # really irregular
    assert_ok(video(clips / "vfr.mp4", "-o", tmp_path, "-q", *model_args))
    assert probe(tmp_path / "vfr_depth.mp4")["times"] == source  # exact, so no drift at any length
    assert_ok(video(clips / "vfr.mp4", "-o", tmp_path / "mp4v", "--codec", "mp4v", "-q", *model_args))
    got = probe(tmp_path / "mp4v" / "vfr_depth.mp4")  # MPEG-4 Part 2 counts in at most 65535 ticks/s:
    assert got["vcodec"] == "mpeg4" and len(got["times"]) == len(source)  # 1/45000 here, each frame
    assert max(abs(a - b) for a, b in zip(got["times"], source, strict=True)) <= Fraction(1, 90000)  # within a tick


def test_odd_sizes_mp4v_and_codec_errors(tmp_path: Path, clips: Path, model_args: list[str]) -> None:
    proc = video(clips / "odd.mp4", "-o", tmp_path, *model_args)
    assert_ok(proc)
    assert f"h264 needs even sides: {W - 1}x{H - 1} padded to {W}x{H}" in proc.stderr
    got = probe(tmp_path / "odd_depth.mp4")
    assert got["size"] == (W, H) and len(got["times"]) == 6
    assert_ok(video(clips / "odd.mp4", "-o", tmp_path / "exact", "--codec", "mp4v", "-q", *model_args))
    got = probe(tmp_path / "exact" / "odd_depth.mp4")
    assert (got["vcodec"], got["size"], len(got["times"])) == ("mpeg4", (W - 1, H - 1), 6)
    proc = video(clips / "odd.mp4", "--codec", "mp4v", "--crf", "20", *model_args)
    assert proc.returncode == 2 and "--crf applies to h264 and hevc" in proc.stderr
    from depthcli.io.video.pyav import encoder_available

    proc = video(clips / "odd.mp4", "-o", tmp_path / "hevc", "--codec", "hevc", "--crf", "30", "--side-by-side",
                 *model_args)
    if encoder_available("hevc"):
        assert_ok(proc)
        got = probe(tmp_path / "hevc" / "odd_depth.mp4")
        assert (got["vcodec"], got["size"]) == ("hevc", (2 * (W - 1), H))  # 2 x 95 is even; 63 padded
        assert not any(line.startswith("x265") for line in lines(proc.stderr)), proc.stderr
    else:
        assert proc.returncode == 2 and "no libx265 encoder" in proc.stderr


# ----------------------------------------------------------------------------------- sequences
def _write_frames(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        assert cv2.imwrite(str(folder / name), video_frame(3 * i))


def test_image_sequences_in_and_frames_out(tmp_path: Path, model_args: list[str]) -> None:
    n = 11
    _write_frames(tmp_path / "shots", [f"f{i}.png" for i in range(n)])  # f2 before f10: natural order
    _write_frames(tmp_path / "plate", [f"frame_{i:05d}.png" for i in range(n)])
    (tmp_path / "plate" / "notes.txt").write_text("not a frame")
    proc = video("shots/", "plate/frame_%05d.png", "plate/*.png", "--fps", "12", "--side-by-side",
                 "--frames", "npy", "-q", *model_args, cwd=tmp_path)
    assert_ok(proc)
    outputs = {"shots": tmp_path / "shots_depth.mp4",  # a folder's outputs go beside it
               "pattern": tmp_path / "plate" / "frame_depth.mp4",  # a pattern's beside its frames
               "glob": tmp_path / "plate" / "plate_depth.mp4"}
    for what, out in outputs.items():
        info = video_info(out)
        assert (info.frames, info.fps, info.width, info.height) == (n, 12, 2 * W, H), what
        cap = cv2.VideoCapture(str(out))
        for i in range(n):  # left half: the frames in natural order
            left = cap.read()[1][:, :W].astype(int)
            assert np.abs(left - video_frame(3 * i)).mean() < 12, (what, i)
        assert probe(out)["times"] == [Fraction(i, 12) for i in range(n)]
    npys = sorted((tmp_path / "shots_depth_frames").iterdir())
    assert [p.name for p in npys] == [f"shots_{i:06d}.npy" for i in range(n)]
    assert np.load(npys[0]).shape == (H, W)
    assert temp_leftovers(tmp_path) == []
    proc = video("nothing/frame_%05d.png", *model_args, cwd=tmp_path)
    assert proc.returncode == 5 and errors(proc) == [
        "depthcli: nothing/frame_%05d.png: no such file or folder (no frame matches the pattern)"], proc.stderr


def test_exr_frames_are_read_as_srgb_at_16_bits(tmp_path: Path) -> None:
    openexr = pytest.importorskip("OpenEXR")
    from depthcli.io.video.sequence import SequenceReader

    linear = np.zeros((H, W, 3), np.float32)
    linear[..., 0], linear[..., 1], linear[..., 2] = 0.5, 0.0, 2.0  # R, G, B; 2.0 is over white
    tmp_path.joinpath("exr").mkdir()
    for i in (1, 2, 10):
        header = {"compression": openexr.ZIP_COMPRESSION, "type": openexr.scanlineimage}
        openexr.File(header, {"RGB": linear}).write(str(tmp_path / "exr" / f"sh{i}.exr"))
    with SequenceReader(str(tmp_path / "exr" / "*.exr"), "25") as reader:
        frames = list(reader)
        assert [p.name for p in reader.paths] == ["sh1.exr", "sh2.exr", "sh10.exr"] and reader.fps == 25
    bgr = frames[0][1]
    assert bgr.dtype == np.uint16 and bgr.shape == (H, W, 3)
    assert tuple(bgr[0, 0]) == (65535, 0, round((1.055 * 0.5 ** (1 / 2.4) - 0.055) * 65535))


def test_broken_frame_in_a_sequence_keeps_the_frames_before(tmp_path: Path, model_args: list[str]) -> None:
    _write_frames(tmp_path / "seq", [f"{i:03d}.png" for i in range(6)])
    data = (tmp_path / "seq" / "004.png").read_bytes()
    (tmp_path / "seq" / "004.png").write_bytes(data[: len(data) // 2])
    proc = video("seq", "-o", "out", "-q", *model_args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # 5 is for an input that gives nothing at all
    assert errors(proc) == ["depthcli: seq: stopped after 4 frames: 004.png: truncated or corrupt image data"]
    assert video_info(tmp_path / "out" / "seq_depth.mp4").frames == 4


# ----------------------------------------------------------------------------------- interrupt
def test_sigint_leaves_a_playable_h264_with_its_sound(tmp_path: Path, model_args: list[str]) -> None:
    src = make_clip(tmp_path / "long.mp4", 250)
    stats, err_path = tmp_path / "s.jsonl", tmp_path / "stderr.txt"
    proc = popen_cli("video", src, "-o", tmp_path / "out", "--stats", stats, *model_args, stderr_path=err_path)
    try:
        wait_for_lines(proc, stats, 5)
        assert proc.poll() is None, f"finished before the signal:\n{err_path.read_text()}"
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        stop_process(proc)
    err = err_path.read_text()
    assert code == 130 and "Traceback" not in err, f"exit {code}:\n{err}"
    n = int(re.search(r"interrupted after (\d+) frames; .* finalised and kept", err)[1])
    got = probe(tmp_path / "out" / "long_depth.mp4")
    assert got["vcodec"] == "h264" and got["times"] == [Fraction(i, FPS) for i in range(n)]
    assert abs(got["audio"]["seconds"] - n / FPS) <= AAC_PACKET_S  # the sound ends with the pictures
    assert video_info(tmp_path / "out" / "long_depth.mp4").frames == n
    assert temp_leftovers(tmp_path) == []
