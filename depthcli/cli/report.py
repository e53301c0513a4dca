"""What a run tells the user: one stderr line per item (or a tqdm bar on a terminal), errors
as one line each, an optional JSONL stats file, and the closing summary."""
from __future__ import annotations

import sys
import time
from typing import IO

import click


def printable(text: str) -> str:
    """One line whatever a file name holds: control characters (newlines, form feeds, escape
    sequences, which a --list of junk or a hostile name can carry) are shown escaped."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte that was not UTF-8 (surrogate-escaped)
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


class Reporter:
    def __init__(self, *, total: int, unit: str, quiet: bool, stats_path: str | None,
                 bar: bool | None = None) -> None:
        from ..runtime.stats import RunSummary

        self.unit = unit
        self.quiet = quiet
        self.summary = RunSummary()
        self._t0 = time.perf_counter()
        self._stats: IO[str] | None = None
        if stats_path == "-":
            self._stats = sys.stdout
        elif stats_path:
            try:
                self._stats = open(stats_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
            except OSError as e:
                from . import exit_codes
                from .errors import CliError

                raise CliError(f"--stats {stats_path}: {e.strerror or e}", exit_codes.USAGE) from None
        show_bar = bar if bar is not None else (sys.stderr.isatty() and total > 1)
        self._bar = None
        if show_bar and not quiet:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def _echo(self, text: str) -> None:
        text = printable(text)
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            click.echo(text, err=True)

    def info(self, text: str) -> None:
        if not self.quiet:
            self._echo(text)

    def done(self, stats, extra: str = "") -> None:  # noqa: ANN001 - FrameStats
        from ..runtime.stats import write_jsonl

        self.summary.add(stats)
        if self._stats is not None:
            write_jsonl(self._stats, stats)
        if self._bar is not None:
            mem = "VRAM" if stats.mem_kind == "vram" else "RSS"
            self._bar.set_postfix_str(f"{stats.infer_ms:.0f} ms, {mem} {stats.peak_mem_mb:.0f} MiB")
            self._bar.update(1)
        elif not self.quiet:
            click.echo(printable(stats.line() + extra), err=True)

    def failed(self, label: str, reason: str) -> None:
        """Always shown, even with --quiet: a skipped input must never go unnoticed."""
        self.summary.failed += 1
        if self._bar is not None:
            self._bar.update(1)
        self._echo(f"depthcli: {label}: {reason}")

    def close(self, wall_s: float | None = None) -> str:
        """The summary line; ``wall_s`` when the run was timed elsewhere (a cluster task whose
        lines are replayed here), else the time since this reporter was made."""
        self.summary.wall_s = time.perf_counter() - self._t0 if wall_s is None else wall_s
        if self._bar is not None:
            self._bar.close()
        if self._stats is not None and self._stats is not sys.stdout:
            self._stats.close()
        line = self.summary.line(self.unit)
        if not self.quiet:
            click.echo(line, err=True)
        return line
