"""Atomic output files: a reader (or a re-run) never sees a half-written depth map.

Everything is written to a hidden temporary file beside the target and renamed over it with
``os.replace`` only once complete; on any failure, Ctrl-C included, the temporary file is
removed and an existing target is left untouched. No fsync: the point is "never a partial
file after an error or interrupt", not durability across power loss. What takes more than one
step to finish (a video's encoder flushed and its file renamed, an output and its sidecar)
runs with Ctrl-C and SIGTERM held back (``signals_held``), so an interrupt lands between
outputs, never inside one. Files get the mode of any new file (0666 less the umask), also
when a library writes them (``write_with``).
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np


class OutputError(Exception):
    """An output could not be written; the message is one line (path and reason)."""


def temp_path_for(final: Path) -> Path:
    """A hidden, unique name beside ``final`` that still ends in its suffix, because
    ``cv2.imwrite`` and ``cv2.VideoWriter`` pick the format from the extension."""
    return final.with_name(f".{final.stem}.{secrets.token_hex(4)}.tmp{final.suffix}")


def ensure_parent(final: Path) -> None:
    """Create the output's missing parent directories (writers do it, not callers)."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create directory {final.parent}: {_reason(exc)}") from None


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``final``'s directory; on success it replaces ``final``, on
    any exception (KeyboardInterrupt too) it is deleted and the exception propagates."""
    final = Path(final)
    ensure_parent(final)
    tmp = temp_path_for(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except OSError as exc:
        _unlink_quietly(tmp)
        if isinstance(exc, FileNotFoundError) and not tmp.exists() and exc.filename == str(tmp):
            raise OutputError(f"cannot write {final}: nothing was written") from None
        raise OutputError(f"cannot write {final}: {_reason(exc)}") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back while an output is finalised, and deliver them when it is:
    the handler in place then (the CLI's raises KeyboardInterrupt; the default one ends the
    process) sees the signal at once, once the files are whole. Signals are only handled in the
    main thread, so elsewhere (and for signals a process ignores) this changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: object) -> None:
        held.append(signum)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) not in (signal.SIG_IGN, None):  # None: a handler not set from Python
            previous[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(held):
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)  # here and now: KeyboardInterrupt from the CLI's handler
            else:
                signal.raise_signal(signum)  # the default action: the process ends, its files whole


def write_with(final: str | Path, write: Callable[[Path], None]) -> None:
    """Atomically write ``final`` with a function that writes a file at the path it is given (a
    library's own writer, e.g. safetensors' ``save_file``), with the mode every other output
    gets: such writers may create their files 0600."""
    with atomic_path(final) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the mode a new file gets here
        try:
            mode = os.fstat(fd).st_mode & 0o777
        finally:
            os.close(fd)
        write(tmp)
        os.chmod(tmp, mode)


def write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` atomically; any OS failure (full disk, read-only directory)
    becomes a one-line ``OutputError``."""
    with atomic_path(path) as tmp:
        _write_all(tmp, data)


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes for uint8 gray/BGR/BGRA or uint16 gray/BGR (16-bit depth keeps full precision)."""
    array = np.asarray(array)
    if array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"PNG needs uint8 or uint16 pixels, got {array.dtype}")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))):
        raise ValueError(f"PNG needs an HxW or HxWx(1|3|4) array, got shape {array.shape}")
    try:
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(array))
    except cv2.error as exc:
        raise OutputError(f"PNG encoding failed: {str(exc).strip().splitlines()[-1]}") from None
    if not ok:
        raise OutputError("PNG encoding failed")
    return buf.tobytes()


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Encode in memory then write the bytes ourselves: ``cv2.imwrite`` only returns False on
    a full disk or read-only directory, whereas our own write reports the errno."""
    write_bytes(path, encode_png(array))


def write_npy(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` format, written atomically (serialised in memory first, for the same reason)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    write_bytes(path, buf.getbuffer())


def commit_video(tmp: Path, final: Path, frames_written: int, check_written) -> bool:  # noqa: ANN001
    """Move a closed temporary video into place, or remove it: nothing when no frame was
    written (False), an OutputError when ``check_written()`` (reading the file back) names a
    problem, else the rename (True). Shared by the OpenCV and PyAV writers."""
    if frames_written == 0:
        _unlink_quietly(tmp)
        return False
    problem = check_written()
    if problem:
        _unlink_quietly(tmp)
        raise OutputError(f"cannot write video {final}: {problem}")
    try:
        os.replace(tmp, final)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise OutputError(f"cannot write video {final}: {exc.strerror or exc}") from None
    return True


def write_stdout_bytes(data: bytes) -> bool:
    """Write binary data to stdout; returns False (quietly) if the reader went away, e.g.
    ``depthcli ... -o - | head -c 10``, so the caller can stop producing."""
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return True
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not complain again.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return False


def _write_all(path: Path, data: bytes | memoryview) -> None:
    """Create ``path`` exclusively and write everything, looping over short writes."""
    view = memoryview(data).cast("B")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        while view:
            written = os.write(fd, view)
            if written <= 0:  # pragma: no cover - a zero write would loop forever
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            view = view[written:]
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _reason(exc: OSError) -> str:
    if exc.errno is not None and exc.strerror:
        name = errno.errorcode.get(exc.errno)
        return f"{exc.strerror} ({name})" if name else exc.strerror
    return str(exc) or type(exc).__name__
