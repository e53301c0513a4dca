"""Render docs/example_pointcloud.png: the README scene as a ``depthcli image -f ply`` point cloud,
seen from above and to the side.

    python scripts/make_pointcloud_example.py --model CHECKPOINT [--out docs/]
    python scripts/make_pointcloud_example.py --random-weights    # what the shipped picture used

With a metric checkpoint (``v2-metric-indoor-small``...) the PLY is in metres. With a relative
one (or ``--random-weights``: a random vits from ``random_models.py``, no download) the inverse
depth ``d`` is converted with ``--depth-scale A --depth-shift B`` chosen here so the scene spans
``--near-far`` (3..5 units by default): ``depth = 1 / (A * d + B)``. The picture is drawn with
numpy and OpenCV alone (no plotting library): every vertex projected into a virtual camera, far
points first.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_readme_example import render_scene  # noqa: E402

VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
CANVAS_W, CANVAS_H = 800, 520


def read_ply(path: Path) -> np.ndarray:
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    return np.frombuffer(data[end:], VERTEX)


def view(vertices: np.ndarray, yaw_deg: float = -35.0, pitch_deg: float = -25.0) -> np.ndarray:
    """The cloud seen by a virtual camera turned by ``yaw`` and ``pitch`` around the cloud's
    centre and pulled back until it fits; far points are drawn first, 2x2 pixels each."""
    p = np.stack([vertices["x"], vertices["y"], vertices["z"]], -1).astype(np.float64)
    colour = np.stack([vertices["blue"], vertices["green"], vertices["red"]], -1)
    centre = np.median(p, axis=0)
    p = p - centre
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    p = p @ (rx @ ry).T
    extent = np.percentile(np.abs(p[:, :2]), 99, axis=0)
    p[:, 2] += 2.2 * max(extent.max(), 1e-6)  # pull the camera back
    keep = p[:, 2] > 1e-6
    p, colour = p[keep], colour[keep]
    f = 0.9 * CANVAS_H
    u = (p[:, 0] / p[:, 2] * f + CANVAS_W / 2).astype(int)
    v = (p[:, 1] / p[:, 2] * f + CANVAS_H / 2).astype(int)
    order = np.argsort(-p[:, 2])  # far first: near points overwrite them
    u, v, colour = u[order], v[order], colour[order]
    canvas = np.full((CANVAS_H, CANVAS_W, 3), 24, np.uint8)
    for du in (0, 1):
        for dv in (0, 1):
            uu, vv = u + du, v + dv
            ok = (uu >= 0) & (uu < CANVAS_W) & (vv >= 0) & (vv < CANVAS_H)
            canvas[vv[ok], uu[ok]] = colour[ok]
    return canvas


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="checkpoint path or registry name")
    source.add_argument("--random-weights", action="store_true", help="a random vits (no download)")
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--fov", type=float, default=60.0, help="horizontal field of view of the scene's camera")
    ap.add_argument("--near-far", type=float, nargs=2, default=(3.0, 5.0), metavar=("NEAR", "FAR"),
                    help="relative models: the depth range the 1st..99th percentile of d is mapped to")
    ap.add_argument("--yaw", type=float, default=-30.0, help="view: degrees around the vertical axis")
    ap.add_argument("--pitch", type=float, default=-18.0, help="view: degrees around the horizontal axis")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        model = a.model
        if a.random_weights:
            from random_models import build_weights

            model = str(build_weights("vits", tmp / "weights").path)
        scene = tmp / "scene.png"
        cv2.imwrite(str(scene), render_scene())
        base = ["depthcli", "image", str(scene), "-o", str(tmp), "--model", model, "-q"]
        if subprocess.call([*base, "-f", "npy"]):
            return 1
        d = np.load(tmp / "scene_depth.npy").astype(np.float64)
        ply = [*base, "-f", "ply", "--fov", str(a.fov)]
        if subprocess.call(ply, stderr=subprocess.DEVNULL):  # relative model: convert explicitly
            lo, hi = np.percentile(d, [1, 99])
            near, far = a.near_far
            scale = (1 / near - 1 / far) / (hi - lo)  # d = hi -> depth near, d = lo -> depth far
            shift = 1 / far - scale * lo
            if subprocess.call([*ply, "--depth-scale", f"{scale:.6g}", "--depth-shift", f"{shift:.6g}"]):
                return 1
        picture = view(read_ply(tmp / "scene_depth.ply"), a.yaw, a.pitch)
        label = "depthcli image scene.png -f ply" + (" (random weights)" if a.random_weights else "")
        cv2.putText(picture, label, (12, CANVAS_H - 14), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (230, 230, 230), 1,
                    cv2.LINE_AA)
        cv2.imwrite(str(a.out / "example_pointcloud.png"), picture)
    print(a.out / "example_pointcloud.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
