#!/usr/bin/env python
"""Start-up and compile costs of whole ``depthcli`` calls, as a shell pipeline pays them.

Every figure is a whole process (median of ``--runs``), measured after one untimed call that
converts the model and fills the caches, so it is what the second and later calls of a user
cost. Scenarios:

- ``photo``: ``depthcli image photo.jpg -f npy -q`` on a 451x300 photo (V2-sized random weights,
  ``--model-size``) at the default size 518, and at ``--size 252``; wall time, the forward pass
  the call reports (``--stats``), and wall minus forward: the start-up;
- ``breakdown``: the same call's phases timed inside one process by a driver that runs the
  CLI's own steps (imports, building the predictor, decode + preprocess, forward,
  postprocess + write);
- ``folder``: 24 photos 1008x756 and 756x1008 in runs of 1-3 against 24 of one orientation, one
  ``depthcli image DIR -f npy`` call each (wall, and the sum of the per-image totals);
- ``light``: ``--help``, ``--version`` and ``depthcli models``.

``--compare CMD`` measures a second depthcli (another install, e.g. the previous release in its
own virtualenv) in the same run, alternating call by call, so both see the same machine.

    python scripts/bench_startup.py --runs 5 [--compare /path/to/old/venv/bin/depthcli]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve()
PHOTO_HW = (300, 451)
FOLDER_HW = (756, 1008)  # landscape (h, w); portrait is the transpose
FOLDER_RUNS = [1, 2, 3, 1, 3, 2, 1, 1, 2, 3, 2, 3]  # runs of one orientation, alternating: 24 photos

DRIVER = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy, cv2, click  # noqa: E401 - what the CLI imports before any work
from depthcli.cli import image, options  # noqa: F401
from depthcli.runtime.loading import build_predictor
from depthcli.runtime.spec import PredictorSpec
from depthcli.jobs import image as job
from depthcli.io.inputs import collect_inputs
t1 = time.perf_counter()
spec = PredictorSpec(model=sys.argv[1], size=int(sys.argv[3]))
predictor = build_predictor(spec)
t2 = time.perf_counter()
items = collect_inputs([sys.argv[2]], recursive=False, list_file=None, stdin=None)[0]
opts = job.ImageOptions(fmt="npy")
image_bgr = job.decode(items[0], opts)
prepared = job.prepare(predictor, image_bgr, "photo")
t3 = time.perf_counter()
prediction = job.infer(predictor, prepared)
t4 = time.perf_counter()
data, _ = job.finish(items[0], image_bgr, prediction, opts)
job.write(data, __import__("pathlib").Path(sys.argv[4]))
t5 = time.perf_counter()
print("PHASES " + json.dumps({"imports": t1 - t0, "model": t2 - t1, "decode+prepare": t3 - t2,
                              "forward": prediction.stats.infer_ms / 1000, "run (staging + forward)": t4 - t3,
                              "finish+write": t5 - t4, "torch imported": "torch" in sys.modules}))
"""


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    """One whole call, from a neutral folder: ``python -c`` puts the working directory first on
    ``sys.path``, so a call from a checkout would import that checkout's depthcli."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=1800,
                          cwd=tempfile.gettempdir())
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bench_startup: {shlex.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return wall, proc


def forward_ms(stdout: str) -> list[float]:
    return [json.loads(line)["infer_ms"] for line in stdout.splitlines() if line.startswith("{")]


def total_ms(stdout: str) -> list[float]:
    return [json.loads(line)["total_ms"] for line in stdout.splitlines() if line.startswith("{")]


def make_inputs(root: Path) -> dict[str, Path]:
    import cv2
    import numpy as np

    rng = np.random.default_rng(7)

    def photo(h: int, w: int) -> np.ndarray:
        coarse = rng.integers(0, 255, (max(2, h // 40), max(2, w // 40), 3), dtype=np.uint8)
        smooth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        return np.clip(smooth.astype(np.int16) + rng.integers(-12, 12, (h, w, 3)), 0, 255).astype(np.uint8)

    paths = {"photo": root / "photo.jpg", "mixed": root / "mixed", "same": root / "same"}
    cv2.imwrite(str(paths["photo"]), photo(*PHOTO_HW))
    for folder in (paths["mixed"], paths["same"]):
        folder.mkdir()
    n, landscape = 0, True
    for run_length in FOLDER_RUNS:
        for _ in range(run_length):
            h, w = FOLDER_HW if landscape else FOLDER_HW[::-1]
            cv2.imwrite(str(paths["mixed"] / f"{n:02d}.jpg"), photo(h, w))
            cv2.imwrite(str(paths["same"] / f"{n:02d}.jpg"), photo(*FOLDER_HW))
            n += 1
        landscape = not landscape
    return paths


def weights(root: Path, size: str, seed: int) -> Path:
    sys.path.insert(0, str(SCRIPT.parent))
    from random_models import build_weights

    return Path(build_weights(size, root / "weights", seed=seed, prefer_transformers=False).path)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="timed calls per configuration (median)")
    p.add_argument("--folder-runs", type=int, default=3, help="timed calls of each folder scenario")
    p.add_argument("--model-size", default="vits", help="vits, vitb or vitl (random weights of that size)")
    beside = Path(sys.executable).parent / "depthcli"  # the one installed with this interpreter
    p.add_argument("--depthcli", default=shutil.which("depthcli") or str(beside), help="the depthcli to measure")
    p.add_argument("--compare", default=None, help="another depthcli to measure alongside (e.g. the last release)")
    p.add_argument("--scenarios", default="photo,breakdown,folder,light")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    args = p.parse_args(argv)
    scenarios = set(args.scenarios.split(","))
    tools = {"depthcli": [args.depthcli]} | ({"compare": [args.compare]} if args.compare else {})
    with tempfile.TemporaryDirectory(prefix="depthcli-startup-") as tmp:
        root = Path(tmp)
        inputs = make_inputs(root)
        model = weights(root, args.model_size, args.seed)
        results: dict[str, dict] = {name: {} for name in tools}
        envs = {}
        for name in tools:
            env = dict(os.environ, XDG_CACHE_HOME=str(root / f"cache-{name}"))
            env.pop("DEPTHCLI_BACKEND", None)
            envs[name] = env
        out = root / "out"
        photo_cases = {"518": [], "252": ["--size", "252"], "252 torch": ["--size", "252", "--backend", "torch"]}
        if "photo" in scenarios:
            for case, extra in photo_cases.items():
                cmds = {name: [*tool, "image", str(inputs["photo"]), "--model", str(model), "-f", "npy", "-q",
                               "-o", str(out), "--stats", "-", *extra] for name, tool in tools.items()}
                for name, cmd in cmds.items():
                    first, _ = run(cmd, envs[name])  # the first use: conversion, compiled blobs
                    results[name][f"first use {case}"] = {"wall_s": first}
                walls: dict[str, list[float]] = {n: [] for n in tools}
                fwds: dict[str, list[float]] = {n: [] for n in tools}
                for _ in range(args.runs):
                    for name, cmd in cmds.items():
                        wall, proc = run(cmd, envs[name])
                        walls[name].append(wall)
                        fwds[name] += forward_ms(proc.stdout)
                for name in tools:
                    w, f = median(walls[name]), median(fwds[name]) / 1000
                    results[name][f"photo {case}"] = {"wall_s": w, "forward_s": f, "startup_s": w - f,
                                                      "walls": walls[name]}
        if "breakdown" in scenarios:
            for name, tool in tools.items():
                python = str(Path(tool[0]).with_name("python"))
                if not Path(python).exists():
                    python = sys.executable
                phases: list[dict] = []
                for _ in range(args.runs):
                    _, proc = run([python, "-c", DRIVER, str(model), str(inputs["photo"]), "518",
                                   str(out / "driver.npy")], envs[name])
                    phases.append(json.loads(proc.stdout.split("PHASES ", 1)[1]))
                results[name]["breakdown 518"] = {k: (median([ph[k] for ph in phases]) if k != "torch imported"
                                                      else phases[-1][k]) for k in phases[0]}
        if "folder" in scenarios:
            for case in ("same", "mixed"):
                cmds = {name: [*tool, "image", str(inputs[case]), "--model", str(model), "-f", "npy", "-q",
                               "-o", str(out / case), "--stats", "-"] for name, tool in tools.items()}
                for name, cmd in cmds.items():
                    run(cmd, envs[name])
                walls = {n: [] for n in tools}
                totals = {n: [] for n in tools}
                for _ in range(args.folder_runs):
                    for name, cmd in cmds.items():
                        wall, proc = run(cmd, envs[name])
                        walls[name].append(wall)
                        totals[name].append(sum(total_ms(proc.stdout)) / 1000)
                for name in tools:
                    results[name][f"folder {case}"] = {"wall_s": median(walls[name]),
                                                       "sum_of_totals_s": median(totals[name]),
                                                       "walls": walls[name]}
        if "light" in scenarios:
            for name, tool in tools.items():
                for what, extra in (("--help", ["--help"]), ("--version", ["--version"]), ("models", ["models"])):
                    results[name][f"light {what}"] = {"wall_s": median([run([*tool, *extra], envs[name])[0]
                                                                        for _ in range(args.runs)])}
    print(report(results, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def report(results: dict[str, dict], args: argparse.Namespace) -> str:
    names = list(results)
    lines = [f"# depthcli start-up ({args.model_size} random weights, median of {args.runs} whole calls, "
             f"model cached)", "", "command: python " + shlex.join([str(SCRIPT.name), *sys.argv[1:]]), ""]
    header = "| scenario | " + " | ".join(f"{n} wall s | {n} forward s | {n} wall - forward s" for n in names) + " |"
    lines += [header, "|" + "---|" * (1 + 3 * len(names))]
    for key in results[names[0]]:
        if not key.startswith("photo"):
            continue
        cells = []
        for n in names:
            r = results[n][key]
            cells += [f"{r['wall_s']:.2f}", f"{r['forward_s']:.2f}", f"{r['startup_s']:.2f}"]
        lines.append(f"| {key.replace('photo ', '451x300 photo, --size ')} | " + " | ".join(cells) + " |")
    firsts = [k for k in results[names[0]] if k.startswith("first use")]
    if firsts:
        per_tool = [f"{n}: " + ", ".join(f"{k.removeprefix('first use ')} {results[n][k]['wall_s']:.1f}"
                                         for k in firsts) for n in names]
        lines += ["", "First call after install (the model converted and compiled, caches filled; wall s): "
                  + "; ".join(per_tool)]
    for n in names:
        b = results[n].get("breakdown 518")
        if b:
            lines += ["", f"Phases of one call ({n}, --size 518, in-process driver, seconds): "
                      + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in b.items())]
    folder = [k for k in results[names[0]] if k.startswith("folder")]
    if folder:
        lines += ["", "| 24 photos 1008x756 (WxH) | " + " | ".join(f"{n} wall s | {n} sum of per-image totals s"
                                                                   for n in names) + " |",
                  "|" + "---|" * (1 + 2 * len(names))]
        for key in folder:
            cells = []
            for n in names:
                r = results[n][key]
                cells += [f"{r['wall_s']:.2f}", f"{r['sum_of_totals_s']:.2f}"]
            label = "one orientation" if key.endswith("same") else "landscape/portrait in runs of 1-3"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        for n in names:
            same, mixed = results[n]["folder same"]["wall_s"], results[n]["folder mixed"]["wall_s"]
            lines.append(f"\n{n}: mixed / one orientation = {mixed / same:.2f}")
    light = [k for k in results[names[0]] if k.startswith("light")]
    if light:
        lines += ["", "Light commands (wall s): " + "; ".join(
            f"{n}: " + ", ".join(f"{k.removeprefix('light ')} {results[n][k]['wall_s']:.2f}" for k in light)
            for n in names)]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
