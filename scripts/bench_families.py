#!/usr/bin/env python
"""Depth Anything 3 and Video Depth Anything: depthcli against the ORIGINAL code on the same
random weights, side by side in one run.

The originals are the pinned snapshots the parity checks use (``../shared/parity/
upstream_da3.tar.gz``, ``upstream_vda.tar.gz``, or ``--da3-snapshot`` / ``--vda-snapshot``),
imported with stand-ins for what single-image depth never runs (as tests/da3_reference.py and
tests/vda_reference.py do). Every measurement runs in a fresh process (``--worker JSON``), so peak
RSS is that configuration's alone.

- ``da3``: DA3-SMALL and DA3MONO-LARGE (real sizes, random weights) at ``--da3-size`` (504) on a
  640x480 photo: median forward ms and peak RSS of the original's ``DepthAnything3Net`` in fp32
  and under its default bf16 autocast, against depthcli's predictor (``build_predictor``, the
  CLI's: OpenVINO on the CPU) in fp32 and bf16. A priming process first converts the checkpoint
  and exports the compiled models (its peak RSS is reported as the first run's); the measured
  process then runs as every later run does, from that cache.
- ``vda-speed``: window mode end to end on a ``--vda-frames`` (300) 1280x720 clip at 518, vits:
  the original ``infer_video_depth`` on the decoded frames (reading them not counted) against
  the whole ``depthcli video clip.mp4`` call (decode, depth, H.264 encode).
- ``vda-memory``: peak RSS of both over a short and a 10x longer clip (320x180 at --size 140, so
  the long clip's frames fit the original's memory): depthcli's stays flat, the original's grows
  with the clip.
- ``webcam``: ``depthcli webcam --source clip.mp4 --no-window --temporal stream --size 252 --bf16``
  on a 640x480 clip with a vits VDA model: end-to-end frames per second, over the whole call and
  steady (start-up cancelled out), beside the same network without its motion modules (a V2
  checkpoint cut from the VDA one): the floor a streaming frame can reach.

    python scripts/bench_families.py --sections da3,vda-speed,vda-memory,webcam --out report.md
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the originals' loaders and randomisers live with the tests
RESULT = "BENCH_RESULT "
SHARED = ROOT.parent / "shared" / "parity"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ================================================================================ workers
def worker(job: dict) -> dict:
    kind = job["kind"]
    if kind != "da3-depthcli":  # depthcli runs a cached model without torch: importing it would count
        import torch

        torch.set_num_threads(job["threads"])
    if kind == "da3-original":
        return _da3_original(job)
    if kind == "da3-depthcli":
        return _da3_depthcli(job)
    if kind == "vda-original":
        return _vda_original(job)
    raise SystemExit(f"unknown job {kind}")


def _photo(h: int = 480, w: int = 640):  # noqa: ANN202
    import cv2
    import numpy as np

    rng = np.random.default_rng(3)
    coarse = rng.integers(0, 255, (h // 40, w // 40, 3), dtype=np.uint8)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _median_ms(fn, warmup: int, repeats: int) -> float:  # noqa: ANN001
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _da3_original(job: dict) -> dict:
    import cv2
    import torch
    from da3_reference import original_da3

    os.environ.setdefault("DEPTHCLI_DA3_SNAPSHOT", job["snapshot"])
    api = original_da3().api
    wrapper = api.DepthAnything3(model_name=job["preset"]).eval()
    from safetensors.torch import load_model

    load_model(wrapper, str(Path(job["folder"]) / "model.safetensors"), strict=True)
    rgb = cv2.cvtColor(_photo(), cv2.COLOR_BGR2RGB)
    imgs, _, _ = wrapper.input_processor([rgb], None, None, job["size"], "upper_bound_resize", num_workers=1)
    x = imgs[None].float()
    autocast = job["mode"] == "bf16-autocast"

    def forward() -> None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            wrapper.model(x, None, None, [], False, False, "saddle_balanced")

    ms = _median_ms(forward, job["warmup"], job["repeats"])
    return {"ms": ms, "rss_mib": peak_rss_mib(), "network_hw": list(x.shape[-2:])}


def _da3_depthcli(job: dict) -> dict:
    os.environ["XDG_CACHE_HOME"] = job["cache"]  # the converted model and compiled blobs of the priming run
    from depthcli.runtime.loading import build_predictor
    from depthcli.runtime.spec import PredictorSpec

    predictor = build_predictor(PredictorSpec(model=job["folder"], size=job["size"],
                                              precision=None if job["mode"] == "fp32" else "bf16"))
    prepared = predictor.prepare(_photo())
    times = []
    for i in range(job["warmup"] + job["repeats"]):
        stats = predictor.infer(prepared).stats
        if i >= job["warmup"]:
            times.append(stats.infer_ms)
    return {"ms": statistics.median(times), "rss_mib": peak_rss_mib(), "backend": predictor.describe(),
            "network_hw": list(prepared.input_bchw.shape[-2:])}


def _vda_original(job: dict) -> dict:
    import cv2
    import numpy as np
    import torch

    root = Path(job["vda_root"])
    sys.path.insert(0, str(root))
    from vda_reference import shim_torchvision

    shim_torchvision()
    from video_depth_anything.video_depth import VideoDepthAnything

    cfg = {"encoder": "vits", "features": 64, "out_channels": [48, 96, 192, 384]}
    model = VideoDepthAnything(**cfg).eval()
    model.load_state_dict(torch.load(job["checkpoint"], map_location="cpu", weights_only=True), strict=True)
    cap, frames = cv2.VideoCapture(job["clip"]), []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    frames = np.stack(frames)
    t0 = time.perf_counter()
    depth, _ = model.infer_video_depth(frames, 30, input_size=job["size"], device="cpu", fp32=True)
    return {"seconds": time.perf_counter() - t0, "frames": int(depth.shape[0]), "rss_mib": peak_rss_mib()}


# ================================================================================ driver
def run_worker(job: dict, timeout: float = 7200) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(job["threads"]), PYTHONPATH=str(ROOT / "tests"))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--worker", json.dumps(job)], capture_output=True,
                          text=True, timeout=timeout, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    raise SystemExit(f"bench_families: worker {job['kind']} failed:\n{proc.stderr[-3000:]}")


def timed_call(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB of the child, stderr) of one whole command."""
    wrapped = ["/usr/bin/time", "-f", "MAXRSS %M", *cmd] if Path("/usr/bin/time").exists() else cmd
    t0 = time.perf_counter()
    proc = subprocess.run(wrapped, capture_output=True, text=True, env=env, timeout=7200)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bench_families: {' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    rss = [float(line.split()[1]) / 1024 for line in proc.stderr.splitlines() if line.startswith("MAXRSS")]
    return wall, (rss[-1] if rss else float("nan")), proc.stderr


def make_clip(path: Path, n: int, w: int, h: int, fps: float = 30.0) -> Path:
    """A pan over a smooth random scene with moving shapes (every frame differs)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(5)
    big = cv2.resize(rng.integers(0, 255, (h // 20 + 2, w // 10 + 4, 3), dtype=np.uint8), (w * 2, h),
                     interpolation=cv2.INTER_CUBIC)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(n):
        x0 = int(i * w / max(n, 1))
        frame = big[:, x0:x0 + w].copy()
        cv2.circle(frame, (int(w * (0.2 + 0.6 * (i % 90) / 90)), h // 2), h // 8, (40, 200, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def snapshot_root(tar: Path, tmp: Path, inner: str) -> Path:
    with tarfile.open(tar) as tf:
        tf.extractall(tmp, filter="data")
    return tmp / inner


def build_da3(preset: str, folder: Path, snapshot: Path, seed: int) -> Path:
    """A Hub folder of the original's preset with random weights (as check_da3.py builds them)."""
    code = ("import os, sys, torch\n"
            f"os.environ['DEPTHCLI_DA3_SNAPSHOT'] = {str(snapshot)!r}\n"
            "from pathlib import Path\n"
            "from da3_reference import original_da3, randomize, calibrate, save_hub_folder\n"
            "api = original_da3().api\n"
            f"torch.manual_seed({seed})\n"
            f"w = api.DepthAnything3(model_name={preset!r}).eval()\n"
            f"randomize(w, {seed})\n"
            "x = torch.randn(1, 3, 280, 364)\n"
            "calibrate(w.model, x)\n"
            f"save_hub_folder(w, Path({str(folder)!r}), {preset!r})\n")
    if not (folder / "model.safetensors").exists():
        subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "tests")))
    return folder


def build_vda(path: Path, vda_root: Path, seed: int) -> Path:
    """video_depth_anything_vits.pth with random weights (as check_vda.py builds it)."""
    code = ("import sys, torch\n"
            f"sys.path.insert(0, {str(vda_root)!r})\n"
            "from vda_reference import shim_torchvision, randomize_\n"
            "shim_torchvision()\n"
            "from video_depth_anything.video_depth import VideoDepthAnything\n"
            f"torch.manual_seed({seed})\n"
            "m = VideoDepthAnything(encoder='vits', features=64, out_channels=[48, 96, 192, 384]).eval()\n"
            f"randomize_(m, {seed})\n"
            f"torch.save(m.state_dict(), {str(path)!r})\n")
    if not path.exists():
        subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "tests")))
    return path


def section_da3(args: argparse.Namespace, work: Path, lines: list[str], raw: dict) -> None:
    lines += ["", f"## Depth Anything 3 at {args.da3_size} (640x480 photo), model-only ms and peak RSS", "",
              "| preset | precision | original ms | depthcli ms | ratio | original RSS MiB | depthcli RSS MiB "
              "| depthcli first run RSS MiB |",
              "|---|---|---|---|---|---|---|---|"]
    for preset in args.da3_presets:
        folder = build_da3(preset, args.weights / preset.upper(), args.da3_snapshot, 11)
        for precision, original_mode in (("fp32", "fp32"), ("bf16", "bf16-autocast")):
            common = {"threads": args.threads, "warmup": args.warmup, "repeats": args.repeats, "size": args.da3_size,
                      "folder": str(folder), "preset": preset}
            ours_job = {**common, "kind": "da3-depthcli", "mode": precision, "cache": str(work / "cache")}
            # the first run converts the checkpoint (fp32) or compiles the converted graph (bf16) and
            # exports its compiled models; every later run imports them: measured apart
            first = run_worker({**ours_job, "warmup": 2, "repeats": 1})
            ours = run_worker(ours_job)
            theirs = run_worker({**common, "kind": "da3-original", "mode": original_mode,
                                 "snapshot": str(args.da3_snapshot)})
            raw[f"da3 {preset} {precision}"] = {"depthcli": ours, "depthcli_first_run": first, "original": theirs}
            lines.append(f"| {preset} | {precision} (original: {original_mode}) | {theirs['ms']:.0f} "
                         f"| {ours['ms']:.0f} | {theirs['ms'] / ours['ms']:.2f}x | {theirs['rss_mib']:.0f} "
                         f"| {ours['rss_mib']:.0f} | {first['rss_mib']:.0f} |")
    lines += ["", "depthcli RSS: a run with the converted model cached (every run after the first); first run: "
                  "the run that converts the checkpoint (fp32 row) or compiles the converted graph for bf16 "
                  "(bf16 row) and exports the compiled models."]


def section_vda_speed(args: argparse.Namespace, work: Path, lines: list[str], raw: dict, ckpt: Path,
                      vda_root: Path) -> None:
    clip = make_clip(work / "clip720.mp4", args.vda_frames, 1280, 720)
    env = dict(os.environ, XDG_CACHE_HOME=str(work / "cache"))
    cmd = [args.depthcli, "video", str(clip), "--model", str(ckpt), "-o", str(work / "vout"), "-q"]
    subprocess.run([args.depthcli, "video", str(make_clip(work / "warm.mp4", 40, 1280, 720)), "--model", str(ckpt),
                    "-o", str(work / "warm"), "-q"], check=True, env=env)  # the conversion, once
    wall, rss, _ = timed_call(cmd, env)
    theirs = run_worker({"kind": "vda-original", "threads": args.threads, "vda_root": str(vda_root),
                         "checkpoint": str(ckpt), "clip": str(clip), "size": 518}, timeout=14400)
    raw["vda speed"] = {"depthcli_s": wall, "depthcli_rss": rss, "original": theirs}
    lines += ["", f"## Video Depth Anything, window mode, {args.vda_frames} frames 1280x720 at 518 (vits, fp32)", "",
              "| | seconds | frames/s | peak RSS MiB |", "|---|---|---|---|",
              f"| original infer_video_depth (frames already decoded) | {theirs['seconds']:.1f} | "
              f"{theirs['frames'] / theirs['seconds']:.2f} | {theirs['rss_mib']:.0f} |",
              f"| depthcli video (decode + depth + H.264) | {wall:.1f} | {args.vda_frames / wall:.2f} | {rss:.0f} |",
              "", f"ratio: {theirs['seconds'] / wall:.2f}x"]


def section_vda_memory(args: argparse.Namespace, work: Path, lines: list[str], raw: dict, ckpt: Path,
                       vda_root: Path) -> None:
    env = dict(os.environ, XDG_CACHE_HOME=str(work / "cache"))
    subprocess.run([args.depthcli, "video", str(make_clip(work / "warm180.mp4", 8, 320, 180)), "--model", str(ckpt),
                    "--size", "140", "-o", str(work / "warm180"), "-q"], check=True, env=env)  # the conversion, once
    rows = []
    for n in (args.memory_frames, 10 * args.memory_frames):
        clip = make_clip(work / f"small{n}.mp4", n, 320, 180)
        wall, rss, _ = timed_call([args.depthcli, "video", str(clip), "--model", str(ckpt), "--size", "140",
                                   "-o", str(work / f"m{n}"), "-q"], env)
        theirs = run_worker({"kind": "vda-original", "threads": args.threads, "vda_root": str(vda_root),
                             "checkpoint": str(ckpt), "clip": str(clip), "size": 140}, timeout=14400)
        rows.append((n, rss, theirs["rss_mib"], wall, theirs["seconds"]))
    raw["vda memory"] = rows
    lines += ["", "## Video Depth Anything: peak RSS against clip length (320x180 at --size 140)", "",
              "| frames | depthcli RSS MiB | original RSS MiB |", "|---|---|---|"]
    lines += [f"| {n} | {a:.0f} | {b:.0f} |" for n, a, b, _, _ in rows]
    (n1, a1, b1, _, _), (n2, a2, b2, _, _) = rows
    lines.append(f"\n{n2} vs {n1} frames: depthcli x{a2 / a1:.2f}, original x{b2 / b1:.2f}")


def frame_model_like(vda_ckpt: Path, path: Path) -> Path:
    """depth_anything_v2_vits.pth with the VDA checkpoint's encoder and DPT head, no motion
    modules: the same network without its temporal part, the floor a streaming frame can reach."""
    code = ("import torch\n"
            f"sd = torch.load({str(vda_ckpt)!r}, map_location='cpu', weights_only=True)\n"
            "v2 = {('depth_' + k if k.startswith('head.') else k): v for k, v in sd.items()\n"
            "      if '.motion_modules.' not in k}\n"
            f"torch.save(v2, {str(path)!r})\n")
    if not path.exists():
        subprocess.run([sys.executable, "-c", code], check=True)
    return path


def section_webcam(args: argparse.Namespace, work: Path, lines: list[str], raw: dict, ckpt: Path) -> None:
    """Frames per second as a user sees them: the whole call (start-up included), and the steady
    rate, start-up cancelled by timing the same command over fewer frames (``--max-frames``)."""
    clip = make_clip(work / "cam.mp4", args.webcam_frames, 640, 480)
    env = dict(os.environ, XDG_CACHE_HOME=str(work / "cache"))
    short = max(10, args.webcam_frames // 5)
    floor = frame_model_like(ckpt, args.weights / "depth_anything_v2_vits.pth")
    lines += ["", "## depthcli webcam --size 252 --bf16 (640x480 source, vits)", "",
              "| model | frames | whole call s | fps, whole call | fps, steady | model ms/frame (median) |",
              "|---|---|---|---|---|---|"]
    for label, model, extra in (("VDA, --temporal stream", ckpt, ["--temporal", "stream"]),
                                ("the same network without its motion modules (V2)", floor, [])):
        cmd = [args.depthcli, "webcam", "--source", str(clip), "--no-window", *extra, "--size", "252",
               "--bf16", "--model", str(model), "--stats", str(work / "cam.jsonl"), "-q"]
        subprocess.run(cmd, check=True, env=env)  # conversion and compiled blobs, once
        wall_short, _, _ = timed_call([*cmd, "--max-frames", str(short)], env)
        wall, _, _ = timed_call(cmd, env)
        frames = [json.loads(x) for x in (work / "cam.jsonl").read_text().splitlines()]
        model_ms = statistics.median(f["infer_ms"] for f in frames)
        steady = (len(frames) - short) / (wall - wall_short)
        raw.setdefault("webcam", {})[label] = {"frames": len(frames), "wall": wall, "wall_short": wall_short,
                                               "short": short, "model_ms": model_ms, "steady_fps": steady}
        lines.append(f"| {label} | {len(frames)} | {wall:.1f} | {len(frames) / wall:.1f} | {steady:.1f} "
                     f"| {model_ms:.0f} |")
    lines.append(f"\nfps, steady = ({args.webcam_frames} - {short}) frames / (whole call - the call with "
                 f"--max-frames {short})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", default="da3,vda-speed,vda-memory,webcam")
    p.add_argument("--da3-presets", default="da3-small,da3mono-large")
    p.add_argument("--da3-size", type=int, default=504)
    p.add_argument("--vda-frames", type=int, default=300)
    p.add_argument("--memory-frames", type=int, default=300)
    p.add_argument("--webcam-frames", type=int, default=150)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--depthcli", default=shutil.which("depthcli") or str(Path(sys.executable).with_name("depthcli")))
    p.add_argument("--da3-snapshot", type=Path, default=SHARED / "upstream_da3.tar.gz")
    p.add_argument("--vda-snapshot", type=Path, default=SHARED / "upstream_vda.tar.gz")
    p.add_argument("--weights", type=Path, default=None, help="keep the random weights here between runs")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(RESULT + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    from depthcli.runtime.threads import physical_cores

    args.threads = args.threads or physical_cores()
    args.da3_presets = [s for s in args.da3_presets.split(",") if s]
    sections = set(args.sections.split(","))
    lines = [f"# depthcli vs the original DA3 / VDA code (random weights, {args.threads} threads, load average "
             f"{os.getloadavg()[0]:.2f})", "", "command: python " + " ".join([SCRIPT.name, *sys.argv[1:]])]
    raw: dict = {}
    with tempfile.TemporaryDirectory(prefix="depthcli-families-") as tmp:
        work = Path(tmp)
        args.weights = args.weights or work / "weights"
        args.weights.mkdir(parents=True, exist_ok=True)
        if "da3" in sections:
            section_da3(args, work, lines, raw)
        if sections & {"vda-speed", "vda-memory", "webcam"}:
            vda_root = snapshot_root(args.vda_snapshot, work / "vda-src", "vda")
            ckpt = build_vda(args.weights / "video_depth_anything_vits.pth", vda_root, 23)
            if "vda-speed" in sections:
                section_vda_speed(args, work, lines, raw, ckpt, vda_root)
            if "vda-memory" in sections:
                section_vda_memory(args, work, lines, raw, ckpt, vda_root)
            if "webcam" in sections:
                section_webcam(args, work, lines, raw, ckpt)
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n")
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
