"""``depthcli webcam``: live depth from a camera or any OpenCV source, in a window or headless."""
from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import click

from . import exit_codes, signals
from .errors import INTERRUPTED, CliError, interrupted_error
from .options import given, load_predictor, model_options, refuse_unused, with_handled_errors

KEYS_HELP = "q/Esc quit, space pause, s snapshot, c next colormap, r start/stop recording"


@click.command("webcam")
@click.option("--camera", type=click.IntRange(min=0), default=None, help="Camera index (default 0).")
@click.option("--source", metavar="URL|FILE", help="Any OpenCV capture source instead: file, RTSP/HTTP URL.")
@click.option("--no-window", is_flag=True, help="Headless: print per-frame stats instead of showing a window.")
@click.option("--record", "record_path", type=click.Path(dir_okay=False), default=None,
              help="Record the side-by-side view to this video file (r toggles it in the window).")
@click.option("--snapshot-dir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Where s saves the input, the depth PNG and the raw .npy.")
@click.option("--colormap", default="inferno", show_default=True, metavar="NAME")
@click.option("--normalize", type=click.Choice(["running", "frame"]), default="running", show_default=True)
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after N frames.")
@click.option("--temporal", type=click.Choice(["stream", "window"]), default=None,
              help="Video models (Video Depth Anything, vda-*): stream (default here: each frame at once, "
                   "against cached states of earlier frames) or window (32-frame windows: a window's latency).")
@model_options
@click.option("--stats", "stats_path", metavar="FILE", help="Write one JSON object per frame (- = stdout).")
@click.option("-q", "--quiet", is_flag=True)
@with_handled_errors
def webcam_command(camera, source, no_window, record_path, snapshot_dir, colormap, normalize, max_frames, temporal,
                   spec, stats_path, quiet) -> None:  # noqa: ANN001
    """Live depth: input and depth side by side with ms/frame, fps and VRAM.

    \b
    Keys: q/Esc quit, space pause, s snapshot (input, depth PNG, raw npy + json),
          c cycle colormaps, r start/stop recording.
    """
    from ..io.render import COLORMAPS
    from ..io.video.camera import open_source
    from ..io.video.opencv import VideoOpenError, is_url

    if camera is not None and source is not None:
        raise click.UsageError("give --camera or --source, not both")
    if colormap not in COLORMAPS:
        raise click.BadParameter(f"unknown colormap {colormap!r}", param_hint="--colormap")
    if no_window:  # snapshots are taken with the s key, in the window
        refuse_unused(["--snapshot-dir"] if given("snapshot_dir") else [], "to the window's s key (not --no-window)")
    window = None
    if not no_window:
        from ..io.window import DepthWindow, DisplayError

        try:
            window = DepthWindow("depthcli webcam")
        except DisplayError as e:
            raise CliError(f"{e}", exit_codes.DEVICE) from None
    try:
        what = f"camera {camera or 0}" if source is None else source
        try:
            reader = open_source(camera=None if source else (camera or 0), source=source)
        except VideoOpenError as e:
            raise CliError(f"{what}: {e}", exit_codes.INPUT) from None
        predictor = load_predictor(spec)
        if temporal is not None and not predictor.traits.temporal:
            raise click.UsageError(f"--temporal {temporal} applies to video models (Video Depth Anything, "
                                   f"e.g. vda-small); this model estimates each frame alone")
        from ..jobs.metadata import model_facts

        facts = model_facts(predictor, spec)
        live = source is None or is_url(source) or (source.isdigit() and not Path(source).exists())
        session = _Session(predictor, reader, window=window, colormap=colormap, normalize=normalize,
                           record_path=record_path, snapshot_dir=Path(snapshot_dir), quiet=quiet,
                           stats_path=stats_path, live=live, facts=facts, temporal=temporal or "stream")
        try:
            session.run(max_frames)
        except KeyboardInterrupt:
            recording = session.recorder is not None
            session.finish()
            raise interrupted_error(f"{INTERRUPTED}{' (the recording finalised)' if recording else ''}") from None
        session.finish()
        signals.work_done()
    finally:
        if window is not None:
            window.close()


class _Session:
    """The capture -> depth -> display loop with its keys, recording and snapshots."""

    def __init__(self, predictor, reader, *, window, colormap, normalize, record_path, snapshot_dir, quiet,  # noqa: ANN001
                 stats_path, live, facts: dict | None = None, temporal: str = "stream") -> None:
        from ..io.render import COLORMAPS, RunningRange
        from .report import Reporter

        self.predictor, self.reader, self.window = predictor, reader, window
        self.colormaps = sorted(COLORMAPS)
        self.colormap = colormap
        self.running = RunningRange() if normalize == "running" else None
        self.record_path = Path(record_path) if record_path else None
        self.recorder = None
        self.snapshot_dir = snapshot_dir
        self.live = live
        self.quiet = quiet
        self.reporter = Reporter(total=0, unit="frame", quiet=quiet or window is not None, stats_path=stats_path,
                                 bar=False)
        self.paused = False
        self.facts = facts  # jobs.metadata.model_facts: recorded in every snapshot
        self.temporal = temporal  # a video model's mode
        self._last = None  # (frame, prediction, view) of the newest result, for snapshots and pause

    def run(self, max_frames: int | None) -> None:
        from ..runtime.live import LatestFrame

        frames = LatestFrame(self.reader, drop_stale=self.live)
        if self.record_path is not None:
            self._toggle_recording()
        from ..runtime.temporal import clip_runner

        # every model through its clip runner: a frame model answers at once, a video model in
        # streaming mode too (the default here), in window mode a window later
        runner = clip_runner(self.predictor, self.temporal)
        fps_ema, t_prev, n = None, time.perf_counter(), 0
        try:
            for _, frame in frames:
                results = runner.run([(n, frame, self.predictor.prepare(frame, f"frame {n}"))])
                n += 1
                for _, shown, prediction in results:
                    now = time.perf_counter()
                    inst = 1.0 / max(now - t_prev, 1e-6)
                    fps_ema = inst if fps_ema is None else 0.9 * fps_ema + 0.1 * inst
                    t_prev = now
                    if not self._show_result(shown, prediction, fps_ema):
                        return
                if max_frames is not None and n >= max_frames:
                    break
            for _, shown, prediction in runner.finish():  # a window's last frames
                if not self._show_result(shown, prediction, fps_ema):
                    return
        finally:
            frames.stop()
            if frames.error is not None:
                click.echo(f"depthcli: capture stopped: {frames.error}", err=True)

    def _show_result(self, frame, prediction, fps_ema: float | None) -> bool:  # noqa: ANN001
        """Render, record, report and show one frame's depth; False when the user quits. A frame
        is reported once it is in the recording: a run stopped after "frame N" keeps N frames."""
        view = self._render(frame, prediction.depth_hw)
        self._last = (frame, prediction, view)
        if self.recorder is not None:
            self.recorder.write(view)
        self.reporter.done(prediction.stats)
        return self.window is None or self._show(view, prediction.stats, fps_ema)

    def _render(self, frame, depth):  # noqa: ANN001, ANN202
        from ..io import render as r
        from ..jobs.metadata import picture_invert

        value_range = self.running.update(depth) if self.running is not None else None
        return r.side_by_side(frame, r.to_color(depth, colormap=self.colormap, value_range=value_range,
                                                invert=picture_invert(False, self.facts)))

    def _overlay(self, stats, fps: float | None) -> list[str]:  # noqa: ANN001
        mem = "VRAM" if stats.mem_kind == "vram" else "RSS"
        lines = [f"{stats.infer_ms:.0f} ms/frame  {fps or 0:.1f} fps  {mem} {stats.peak_mem_mb:.0f} MiB",
                 f"{self.colormap}  {stats.processed_hw[1]}x{stats.processed_hw[0]}  {stats.device} {stats.dtype}"]
        if self.recorder is not None:
            lines.append("REC")
        if self.paused:
            lines.append("PAUSED (space)")
        return lines

    def _show(self, view, stats, fps) -> bool:  # noqa: ANN001
        """Show one frame and handle keys; False when the user quits."""
        self.window.show(view, self._overlay(stats, fps))
        while True:
            key = self.window.poll_key(1 if not self.paused else 30)
            if self.window.closed or key in ("q", "esc"):
                return False
            if key == "space":
                self.paused = not self.paused
                self.window.show(view, self._overlay(stats, fps))
            elif key == "s":
                self._snapshot()
            elif key == "c":
                self.colormap = self.colormaps[(self.colormaps.index(self.colormap) + 1) % len(self.colormaps)]
            elif key == "r":
                self._toggle_recording()
            if not self.paused:
                return True

    def _snapshot(self) -> None:
        """The newest frame as ``depthcli_<time>_input.png``, ``_depth.png`` (coloured, with the
        metadata that reads it back, as ``depthcli image`` writes it) and ``_depth.npy`` (raw)
        with its ``_depth.json``."""
        from ..io.formats.metadata import sidecar_bytes, sidecar_path
        from ..io.writers import signals_held, write_bytes, write_npy, write_png
        from ..jobs.image import ImageOptions, encode, metadata, render

        if self._last is None:
            return
        frame, prediction, _ = self._last
        stem = self.snapshot_dir / datetime.now().strftime("depthcli_%Y%m%d_%H%M%S_%f")
        name = f"{stem.name}_input.png"
        color = ImageOptions(fmt="color", colormap=self.colormap)
        with signals_held():  # the four files of a snapshot, whole
            write_png(Path(f"{stem}_input.png"), frame)
            picture = render(frame, prediction.depth_hw, color, facts=self.facts)  # as `depthcli image` draws it
            write_bytes(Path(f"{stem}_depth.png"), encode(picture, color, metadata(self.facts, prediction, color,
                                                                                   name=name)))
            npy = Path(f"{stem}_depth.npy")
            write_npy(npy, prediction.depth_hw)
            write_bytes(sidecar_path(npy), sidecar_bytes(metadata(self.facts, prediction, ImageOptions(fmt="npy"),
                                                                  name=name)))
        click.echo(f"depthcli: snapshot {stem}_{{input,depth}}.png + _depth.npy (+ .json)", err=True)

    def _toggle_recording(self) -> None:
        from ..io.video.opencv import VideoWriter
        from ..io.video.pyav import CONTAINERS, AvVideoWriter
        from ..io.writers import signals_held

        if self.recorder is not None:
            recorder, self.recorder = self.recorder, None
            with signals_held():  # the encoder flushed and the file renamed: a whole recording
                recorder.close()
                if not self.quiet:
                    click.echo(f"depthcli: recording saved to {self.recorder_path}", err=True)
            return
        w, h = self.reader.size
        path = self.record_path or Path(datetime.now().strftime("depthcli_%Y%m%d_%H%M%S.mp4"))
        self.recorder_path = path
        with signals_held():  # its temporary file and encoder whole before an interrupt finalises it
            if Path(path).suffix.lower() in CONTAINERS:  # H.264 that players and editors take
                self.recorder = AvVideoWriter(path, self.reader.fps, (2 * w, h))
            else:  # .avi and friends: OpenCV picks a codec for the container, as before
                self.recorder = VideoWriter(path, self.reader.fps, (2 * w, h))

    def finish(self) -> None:
        if self.recorder is not None:
            self._toggle_recording()
        self.reporter.close()
