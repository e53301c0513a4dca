"""One entry point for live and recorded sources: a camera index, a file or a stream URL.

Everything comes back as a ``VideoReader`` (iteration, ``fps``, ``size``, ``frame_count``), so
the loop that runs the model does not care where frames come from.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2

from .opencv import VideoOpenError, VideoReader, _capture


def open_source(camera: int | None = None, source: str | Path | None = None) -> VideoReader:
    """Open camera ``camera`` or the file/URL ``source`` (exactly one). A ``source`` made only
    of digits that is not an existing file is taken as a camera index, like OpenCV does."""
    if (camera is None) == (source is None):
        raise ValueError("give exactly one of camera or source")
    if source is not None:
        text = str(source)
        if text.isdigit() and not Path(text).exists():
            return open_camera(int(text))
        return VideoReader(text)
    return open_camera(int(camera))  # type: ignore[arg-type]


def open_camera(index: int) -> VideoReader:
    """Open a local camera and check it delivers a first frame (a camera that "opens" while
    another program holds it often gives none)."""
    if index < 0:
        raise VideoOpenError(f"invalid camera index {index}")
    if sys.platform.startswith("linux"):
        tried = f" (tried /dev/video{index})"
    else:
        tried = ""
    # No capture parameters here: OpenCV refuses to open a device with a parameter its backend
    # does not use, and camera backends differ.
    cap = _capture(index, cv2.CAP_ANY)
    if cap is None or not cap.isOpened():
        if cap is not None:
            cap.release()
        raise VideoOpenError(f"no camera at index {index}{tried}")
    return VideoReader.from_capture(
        cap,
        f"camera {index}",
        open_error=f"no camera at index {index}{tried}",
        no_frame_error=f"camera {index} opened but delivered no frame (in use by another program?)",
        live=True,
    )
