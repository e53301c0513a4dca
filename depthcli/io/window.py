"""A live preview window (OpenCV highgui) with a small text overlay and key polling.

Availability is checked *before* touching highgui: a headless OpenCV raises "The function is
not implemented", and a Qt build with no reachable X server aborts the whole process, which no
``except`` can catch. Both become a ``DisplayError`` the CLI turns into one line.
"""
from __future__ import annotations

import os
import re
import socket
import sys

import cv2
import numpy as np

from .render import to_bgr8

NO_DISPLAY = "no display available (use --no-window)"

_KEY_NAMES = {27: "esc", 32: "space", 13: "enter", 10: "enter", 9: "tab", 8: "backspace", 127: "backspace"}


class DisplayError(Exception):
    """No window can be shown here; one-line message."""


def gui_backend() -> str | None:
    """The GUI toolkit OpenCV was built with ("QT5", "GTK3", "WIN32UI", "COCOA"...), None if
    headless (``opencv-python-headless`` reports "NONE"); "unknown" if the report has no GUI
    line (then ``namedWindow`` decides)."""
    match = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.M)
    if match is None:
        return "unknown"
    name = match.group(1)
    return None if name.upper() == "NONE" else name


def check_display() -> None:
    """Raise ``DisplayError`` unless a window can be opened (see the module docstring)."""
    if gui_backend() is None:
        raise DisplayError(f"{NO_DISPLAY}: this OpenCV is built without GUI support")
    if sys.platform.startswith(("linux", "freebsd")):
        if os.environ.get("WAYLAND_DISPLAY"):
            return
        display = os.environ.get("DISPLAY", "")
        if not display:
            raise DisplayError(f"{NO_DISPLAY}: DISPLAY is not set")
        if not _x_server_reachable(display):
            raise DisplayError(f"{NO_DISPLAY}: cannot connect to X display {display}")


def _x_server_reachable(display: str) -> bool:
    """Connect to the X server's socket the way Xlib would (":N" local socket, "host:N" TCP on
    6000+N); anything unparseable is given the benefit of the doubt."""
    match = re.fullmatch(r"(?:(?P<host>[^:]*?)(?:/unix)?)?:(?P<num>\d+)(?:\.\d+)?", display)
    if match is None:
        return True
    host, num = match.group("host") or "", int(match.group("num"))
    if host in ("", "unix"):
        path = f"/tmp/.X11-unix/X{num}"
        for address in ("\0" + path, path):  # Linux abstract socket, then the file
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(1.0)
                    s.connect(address)
                    return True
            except OSError:
                continue
        return False
    try:
        with socket.create_connection((host, 6000 + num), timeout=1.0):
            return True
    except OSError:
        return False


def _point_qt_at_system_fonts() -> None:
    """opencv-python's Qt build sets QT_QPA_FONTDIR to a fonts folder it does not ship, and Qt
    then prints "QFontDatabase: Cannot find font directory" several times per window. Point it
    at a system folder with fonts instead (read when Qt starts, i.e. at the first window), or,
    with none, hide Qt's uncategorised warnings."""
    font_dir = os.environ.get("QT_QPA_FONTDIR")
    if not sys.platform.startswith("linux") or not font_dir or os.path.isdir(font_dir):
        return
    for root in ("/usr/share/fonts", "/usr/local/share/fonts"):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            if any(name.lower().endswith((".ttf", ".otf")) for name in filenames):
                os.environ["QT_QPA_FONTDIR"] = dirpath
                return
    os.environ.setdefault("QT_LOGGING_RULES", "default.warning=false")


def draw_overlay(frame_bgr_u8: np.ndarray, overlay_lines: list[str]) -> np.ndarray:
    """A copy of the frame with the lines top-left, white on a darkened box so they stay
    readable on any depth colours; the font scales with the frame height."""
    frame = to_bgr8(frame_bgr_u8).copy()
    lines = [line for line in overlay_lines if line]
    if not lines:
        return frame
    height, width = frame.shape[:2]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, min(1.2, height / 900))
    thickness = 1 if scale < 0.8 else 2
    pad = max(4, int(8 * scale))
    sizes = [cv2.getTextSize(line, font, scale, thickness) for line in lines]
    line_height = max(h + baseline for (_, h), baseline in sizes) + pad // 2
    box_w = min(width, max(w for (w, _), _ in sizes) + 2 * pad)
    box_h = min(height, line_height * len(lines) + pad)
    roi = frame[:box_h, :box_w]
    roi[:] = (roi.astype(np.uint16) * 3 // 10).astype(np.uint8)  # darken to 30%
    for i, line in enumerate(lines):
        baseline_y = pad + (i + 1) * line_height - pad // 2 - sizes[i][1]
        cv2.putText(frame, line, (pad, baseline_y), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return frame


def key_name(code: int) -> str | None:
    """``cv2.waitKey`` code to a name: letters/digits as themselves (lower case), 'esc',
    'space', 'enter'...; None for no key (-1)."""
    if code < 0:
        return None
    code &= 0xFF
    if code in _KEY_NAMES:
        return _KEY_NAMES[code]
    char = chr(code)
    return char.lower() if char.isprintable() else None


class DepthWindow:
    """One resizable preview window; ``show`` per frame, ``poll_key`` to react to keys."""

    def __init__(self, title: str) -> None:
        check_display()
        _point_qt_at_system_fonts()
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        except cv2.error as exc:
            raise DisplayError(f"{NO_DISPLAY}: {_first_line(exc)}") from None
        self._open = True
        self._shown = False

    def show(self, frame_bgr_u8: np.ndarray, overlay_lines: list[str] | None = None) -> None:
        """Draw the overlay on a copy and display it (the caller's frame is not modified)."""
        try:
            if not self._shown:  # Qt opens at 400x300 whatever the frame: start at its own size
                h, w = frame_bgr_u8.shape[:2]
                cv2.resizeWindow(self.title, w, h)
            cv2.imshow(self.title, draw_overlay(frame_bgr_u8, overlay_lines or []))
        except cv2.error as exc:
            raise DisplayError(f"cannot show window: {_first_line(exc)}") from None
        self._shown = True

    def poll_key(self, delay_ms: int = 1) -> str | None:
        """Process window events for ``delay_ms`` and return the key pressed, if any."""
        try:
            return key_name(cv2.waitKey(max(1, delay_ms)))
        except cv2.error:
            return None

    @property
    def closed(self) -> bool:
        """True once the user closed the window (or ``close()`` was called)."""
        if not self._open:
            return True
        if not self._shown:
            return False  # before the first imshow some backends report "not visible"
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error:
            return True

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)  # let the toolkit actually remove it
            except cv2.error:
                pass

    def __enter__(self) -> DepthWindow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
