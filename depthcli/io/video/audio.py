"""The source's sound in the depth video: one audio track copied or re-encoded into the output
MP4, cut to exactly the time span the video frames cover.

Why it lives beside the video writer rather than in a second pass: the output must be complete
and playable at every exit (Ctrl-C, a decode error midway, ``--max-frames``), so the sound is
muxed as the frames are, up to the start of the newest frame, and the last stretch is added
when the writer closes, ending where the last frame ends.

Packets are *copied* when MP4 carries the codec and editors read it (AAC, MP3, AC-3, E-AC-3,
ALAC): no quality loss, cut at packet boundaries (an AAC packet is 1024 samples, ~21 ms at
48 kHz). Anything else (PCM from a MOV/MKV/AVI, Vorbis, Opus, FLAC, ...) is decoded, cut to
the sample and encoded as AAC. Times are the source's own (``Fraction`` seconds on the
container's clock), so the cut matches the frames whatever ``--start`` / ``--end`` selected.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

# Codecs copied as they are: MP4 holds them and common editors and browsers play them.
COPY_CODECS = frozenset({"aac", "mp3", "ac3", "eac3", "alac"})
# Sample rates the AAC encoder accepts; others are resampled to 48 kHz.
AAC_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000})
AAC_BIT_RATE_PER_CHANNEL = 96_000


@dataclass(frozen=True)
class AudioTrack:
    """Where the sound of a video is: the file and the stream's index in it (plain data)."""

    path: str
    index: int  # the stream's index among all the file's streams
    codec: str
    sample_rate: int
    channels: int

    @property
    def copied(self) -> bool:
        return self.codec in COPY_CODECS


def find_audio(container: av.container.InputContainer, path: str) -> AudioTrack | None:
    """The track a player would pick (FFmpeg's "best" audio stream), or None."""
    try:
        stream = container.streams.best("audio")
    except (av.FFmpegError, ValueError):
        return None
    if stream is None or stream.codec_context is None:
        return None
    ctx = stream.codec_context
    return AudioTrack(path=path, index=stream.index, codec=ctx.name, sample_rate=int(ctx.sample_rate or 0),
                      channels=int(ctx.channels or 0))


class AudioError(Exception):
    """The source's sound could not be read (the video is written without the rest of it)."""


class AudioMuxer:
    """Feeds one ``AudioTrack`` into ``output`` in step with the video (see the module doc).

    ``start(t0)`` once, with the source time of the first video frame; ``feed(until)`` after
    each frame; ``finish(end)`` when the video ends. Output timestamps are relative to ``t0``,
    as the video's are. Errors *reading* the source stop the sound (``problem`` says why) but
    never the video; errors *writing* (a full disk) propagate like the video's.
    """

    def __init__(self, track: AudioTrack, output: av.container.OutputContainer) -> None:
        self.track = track
        self.problem: str | None = None
        try:
            self._input = av.open(track.path, metadata_errors="ignore")
            self._in = next(s for s in self._input.streams if s.index == track.index)
        except (av.FFmpegError, OSError, StopIteration) as e:
            raise AudioError(f"cannot open the audio track ({_reason(e)})") from None
        self._in_tb: Fraction = self._in.time_base or Fraction(1, max(track.sample_rate, 1))
        self.copy = track.copied
        self._output = output
        if self.copy:
            self._out = output.add_stream_from_template(self._in)
        else:
            rate = track.sample_rate if track.sample_rate in AAC_RATES else 48000
            layout = "mono" if track.channels == 1 else "stereo"
            self._out = output.add_stream("aac", rate=rate, layout=layout)
            self._out.bit_rate = AAC_BIT_RATE_PER_CHANNEL * (1 if layout == "mono" else 2)
            self._rate = rate
            self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
            self._samples_out = 0  # samples handed to the encoder so far
            self._next_pts: int | None = None
        self._t0: Fraction | None = None
        self._end: Fraction | None = None
        self._items: Iterator | None = None
        self._peeked = None  # a packet or frame read ahead (it starts at or after ``until``)
        self._preroll = None  # copy: the packet just before t0 (AAC needs the one before to decode)
        self._done = False

    # --- the public steps -------------------------------------------------------------------------
    def start(self, t0: Fraction) -> None:
        """Position the source at ``t0`` (seconds on the source's clock)."""
        self._t0 = t0
        try:
            if t0 > 0:
                self._input.seek(math.floor(t0 / self._in_tb), stream=self._in, backward=True)
        except (av.FFmpegError, OSError):
            self._input.seek(0, stream=self._in, backward=True)  # read from the start, skipping
        self._items = self._packets() if self.copy else self._frames()

    def feed(self, until: Fraction) -> None:
        """Mux the sound that starts before ``until`` (the start of the newest video frame)."""
        if self._done or self._t0 is None:
            return
        while True:
            item = self._next()
            if item is None:
                return
            start = self._start_of(item)
            if start is None:
                continue
            if start >= until or (self._end is not None and start >= self._end):
                self._peeked = item
                return
            self._emit(item, start)

    def finish(self, end: Fraction) -> None:
        """Mux the sound up to ``end`` (where the last video frame ends), flush, close the source."""
        if self._t0 is not None and not self._done:
            self._end = end
            self.feed(end)
            if not self.copy:
                self._encode_resampled(self._resampler.resample(None))
                self._mux(self._out.encode(None))
        self.close()

    def close(self) -> None:
        self._done = True
        try:
            self._input.close()
        except (av.FFmpegError, OSError):
            pass

    # --- reading ----------------------------------------------------------------------------------
    def _next(self):  # noqa: ANN202 - an av Packet or AudioFrame
        if self._peeked is not None:
            item, self._peeked = self._peeked, None
            return item
        try:
            return next(self._items, None)  # type: ignore[arg-type]
        except (av.FFmpegError, OSError, ValueError) as e:  # a damaged audio track: keep what we have
            self.problem = f"the sound stops early ({_reason(e)})"
            self._done = True
            return None

    def _packets(self) -> Iterator:
        for packet in self._input.demux(self._in):
            if packet.size:  # the empty packet at the end only flushes decoders
                yield packet

    def _frames(self) -> Iterator:
        for packet in self._input.demux(self._in):
            yield from packet.decode()

    def _start_of(self, item) -> Fraction | None:  # noqa: ANN001
        ts = item.pts if item.pts is not None else item.dts
        if ts is None:
            return None
        return ts * (item.time_base or self._in_tb)

    # --- writing ----------------------------------------------------------------------------------
    def _emit(self, item, start: Fraction) -> None:  # noqa: ANN001
        t0 = self._t0
        if self.copy:
            if start < t0:  # a packet cannot be cut: the last one before t0 is kept as pre-roll
                self._preroll = item
                return
            if self._preroll is not None:  # (negative time: players decode it and skip it, so
                preroll, self._preroll = self._preroll, None  # the sound at t0 decodes right)
                self._copy_packet(preroll)
            self._copy_packet(item)
            return
        self._encode_trimmed(item, start)

    def _copy_packet(self, packet) -> None:  # noqa: ANN001
        tb = packet.time_base or self._in_tb
        shift = round(self._t0 / tb)
        packet.pts = packet.pts - shift if packet.pts is not None else None
        packet.dts = packet.dts - shift if packet.dts is not None else None
        packet.stream = self._out
        self._mux([packet])

    def _encode_trimmed(self, frame, start: Fraction) -> None:  # noqa: ANN001
        """Cut a decoded frame to [t0, end) to the sample, resample, encode."""
        rate = frame.sample_rate
        n = frame.samples
        first = max(0, math.ceil((self._t0 - start) * rate))
        last = n if self._end is None else min(n, max(0, math.ceil((self._end - start) * rate)))
        if first >= last:
            return
        if self._next_pts is None:  # the sound may begin after the first frame: keep its offset
            self._next_pts = max(0, round((start + Fraction(first, rate) - self._t0) * self._rate))
        if first or last < n:
            frame = _slice(frame, first, last)
        frame.pts = None
        self._encode_resampled(self._resampler.resample(frame))

    def _encode_resampled(self, frames: list) -> None:
        for f in frames:
            f.pts = self._next_pts + self._samples_out if self._next_pts is not None else self._samples_out
            f.time_base = Fraction(1, self._rate)
            self._samples_out += f.samples
            self._mux(self._out.encode(f))

    def _mux(self, packets: list) -> None:
        for p in packets:
            self._output.mux(p)


def _slice(frame, first: int, last: int):  # noqa: ANN001, ANN202 - av.AudioFrame
    """Samples [first, last) of an audio frame, planar or packed."""
    data = frame.to_ndarray()
    if frame.format.is_planar:
        data = data[:, first:last]
    else:
        ch = frame.layout.nb_channels
        data = data[:, first * ch:last * ch]
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=frame.format.name, layout=frame.layout.name)
    out.sample_rate = frame.sample_rate
    return out


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
