"""Render the README's example scene and run ``depthcli image --side-by-side`` on it.

No photo ships with the project, so the input is drawn here: a sky, a checkerboard ground plane
in perspective, and a few shaded boxes and balls at different distances.

    python scripts/make_readme_example.py --model CHECKPOINT [--out docs/]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

W, H = 640, 400
HORIZON = 150


def render_scene() -> np.ndarray:
    img = np.zeros((H, W, 3), np.float32)
    sky = np.linspace(1.0, 0.55, HORIZON)[:, None]
    img[:HORIZON] = np.stack([sky * 0.95, sky * 0.80, sky * 0.55], -1)  # BGR: pale blue
    ys, xs = np.mgrid[HORIZON:H, 0:W].astype(np.float32)
    z = 60.0 / (ys - HORIZON + 1.0)  # ground distance grows towards the horizon
    gx = (xs - W / 2) * z / 60.0
    checker = ((np.floor(gx * 1.5) + np.floor(z * 3)) % 2).astype(np.float32)
    shade = np.clip(1.2 - z * 0.25, 0.25, 1.0)
    ground = (0.35 + 0.35 * checker) * shade
    img[HORIZON:] = np.stack([ground * 0.6, ground * 0.75, ground * 0.7], -1)
    out = (img * 255).astype(np.uint8)
    boxes = [((60, 250), (190, 380), (40, 60, 200)), ((430, 190), (500, 260), (200, 120, 40)),
             ((300, 165), (335, 195), (60, 170, 60))]
    for (x0, y0), (x1, y1), colour in boxes:  # far boxes are smaller and higher
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, -1)
        top = np.array([[x0, y0], [x1, y0], [x1 + (x1 - x0) // 4, y0 - (y1 - y0) // 5],
                        [x0 + (x1 - x0) // 4, y0 - (y1 - y0) // 5]], np.int32)
        cv2.fillPoly(out, [top], tuple(int(c * 1.3) for c in colour))
    for (cx, cy), r, colour in (((560, 330), 50, (30, 140, 230)), ((250, 215), 22, (180, 60, 160))):
        for i in range(r, 0, -1):  # radial shading
            k = 0.55 + 0.45 * (1 - i / r)
            cv2.circle(out, (cx - (r - i) // 3, cy - (r - i) // 3), i, tuple(int(c * k) for c in colour), -1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint path or registry name")
    ap.add_argument("--out", type=Path, default=Path("docs"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    scene = a.out / "example_scene.png"
    cv2.imwrite(str(scene), render_scene())
    cmd = ["depthcli", "image", str(scene), "--side-by-side", "-o", str(a.out), "--model", a.model]
    rc = subprocess.call(cmd)
    produced = a.out / "example_scene_depth.png"
    if rc == 0:
        produced.replace(a.out / "example_side_by_side.png")
    return rc


if __name__ == "__main__":
    sys.exit(main())
