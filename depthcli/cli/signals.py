"""Ctrl-C and SIGTERM end every command the one documented way (docs/exit-codes.md).

Taken when the CLI starts, before anything is loaded or written, and kept until the process
exits, so no moment of a run is left to the default action (killed by the signal: exit 143,
no message, a video unfinalised):

- while the CLI starts (imports, option parsing), a signal is remembered and ends the run as
  soon as the command begins, before it does anything;
- while the command works, the first signal stops it: ``KeyboardInterrupt`` in the main thread,
  which each command turns into its one line and exit 130 after finishing what is open (every
  output written so far is complete; a video is finalised). Outputs being finalised hold the
  signal until they are whole (``io.writers.signals_held``);
- further signals while it stops change nothing (the stopping is what finishes the files), but
  the third after the first ends the process the default way, for a run that cannot stop;
- once the work is done (``work_done``: everything written), a signal changes nothing: the run
  ends with its own exit code (0 when all went well). When the CLI is the program, the signals
  are then ignored by the OS (``release(program=True)``), because Python puts the default action
  back while the interpreter shuts down; an embedding caller gets its own handlers back.

Light on purpose (``signal`` and ``threading`` only): it runs before ``--help`` is answered.
"""
from __future__ import annotations

import signal
import threading

_STARTING, _RUNNING, _STOPPING, _DONE = "starting", "running", "stopping", "done"
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state: dict = {"phase": _DONE, "pending": False, "extra": 0, "previous": {}}


def install() -> None:
    """Take SIGTERM (and Ctrl-C, unless the process was started with it ignored, as background
    jobs are) from now on; a signal before ``begin`` is kept for it."""
    if threading.current_thread() is not threading.main_thread():
        return  # embedded use off the main thread: signals are not ours to take
    if _state["phase"] != _STARTING:  # a second install while starting keeps what came meanwhile
        _state.update(phase=_STARTING, pending=False, extra=0)
    for sig in _SIGNALS:
        current = signal.getsignal(sig)
        if current is _on_signal:
            continue
        if sig == signal.SIGINT and current is not signal.default_int_handler:
            continue  # ignored (a background job) or someone else's: leave it
        _state["previous"][sig] = current
        signal.signal(sig, _on_signal)


def begin() -> None:
    """The command starts: from now on a signal stops it, and one that came while the CLI was
    starting stops it here (``KeyboardInterrupt``), before it has done anything."""
    if _state["phase"] != _STARTING:
        return
    _state["phase"] = _RUNNING
    if _state["pending"]:
        _state["phase"] = _STOPPING
        raise KeyboardInterrupt


def work_done() -> None:
    """Everything is written: from now on a signal does not change how the run ends."""
    if _state["phase"] != _DONE:
        _state["phase"] = _DONE


def release(*, program: bool) -> None:
    """The command has ended. ``program``: this process is the CLI and exits next, so the signals
    are ignored by the OS until it has (Python would restore the default action, exit 143, for
    its shutdown); otherwise the caller's handlers are put back."""
    if threading.current_thread() is not threading.main_thread():
        return
    work_done()
    previous, _state["previous"] = _state["previous"], {}
    for sig, handler in previous.items():
        signal.signal(sig, signal.SIG_IGN if program else handler)


def _on_signal(signum: int, frame: object) -> None:
    phase = _state["phase"]
    if phase == _STARTING:
        _state["pending"] = True
        return
    if phase == _RUNNING:
        _state["phase"] = _STOPPING
        raise KeyboardInterrupt
    _state["extra"] += 1
    if _state["extra"] >= 3:  # asked three more times: it is not stopping, so no longer wait for it
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
