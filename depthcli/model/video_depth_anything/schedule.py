"""How the original runs Video Depth Anything over a long video, as plain NumPy-only bookkeeping
(no torch, no frames: the caller owns pixels, features and depth; these say what to do with them).

Window mode (the original ``infer_video_depth``): 32-frame windows advancing by 22 frames.

- Every window after the first re-feeds, as its first 10 inputs, the inputs of the previous
  window's keyframes, positions 0, 12 and 24..31. Position 0 is therefore frame 0 in every window
  (an anchor the whole clip shares) and position 1 the frame 10 steps back; positions 2..9 are
  the window's own frames 2..9, which the previous window saw too. A caller keeps these frames'
  encoder features instead of encoding them again (``Window.refed``, ``Window.keyframes``).
- The last window is filled by repeating the last frame (``Window.frames`` says which frame
  each input shows); the padding is never output.
- Relative models: each window's depth, upsampled to the frame size, is fitted to the earlier
  windows by least squares (scale and shift, float32 normal equations, as the original
  ``compute_scale_and_shift``) on its positions 0 and 1 against the depth already settled for
  the same two frames (frame 0 as the first window saw it, and the previous window's aligned
  position 12), then clipped at 0. Metric models are not fitted.
- Across each seam, the 8 frames both windows hold (positions 24..31 of one, 2..9 of the next)
  are blended linearly from the older window's depth to the newer one's.

``WindowPlanner`` says, frame by frame, when a window is ready and what it holds;
``WindowAligner`` turns each window's depth into final frames as soon as no later seam can
change them. Between windows the aligner holds 10 frames of depth (8 awaiting the next seam, 2
references), so memory stays within one window whatever the clip's length.

Streaming mode (the original ``video_depth_stream.py``): one frame in, one depth out. The new
frame's motion modules attend to cached hidden states of 31 earlier frames; ``StreamCache`` keeps
the original's choice of which (frame 0's, one from about 41 frames back, the latest 29).
``ContextSlots`` lets a runtime keep those states in place: from one frame to the next the
context changes by two frames, so two are written, not 31 copied.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WINDOW = 32  # frames per window (the original INFER_LEN)
OVERLAP = 10  # inputs each window re-feeds from the previous one
STEP = WINDOW - OVERLAP  # 22: where the next window starts
KEYFRAMES = (0, 12, 24, 25, 26, 27, 28, 29, 30, 31)  # positions of a window re-fed by the next
BLEND = 8  # frames blended across a seam (the original INTERP_LEN)
FIT = OVERLAP - BLEND  # 2: re-fed inputs used only to fit scale and shift (positions 0 and 1)
# the previous window's positions those two re-feed, whose depth is the fitting target
FIT_TARGETS = KEYFRAMES[:FIT]  # (0, 12)
FINAL_BEFORE = WINDOW - BLEND  # 24: positions below this are final once the window is aligned

STREAM_HEAD = 2  # oldest cached states a streaming frame attends to (frame 0's, and one sliding)
STREAM_TAIL = WINDOW - 3  # 29 latest cached states
STREAM_GAP = STEP * 2 - 1 - FIT  # 41: the original's ``gap``, past which old states are dropped
STREAM_CONTEXT = STREAM_HEAD + STREAM_TAIL  # 31 cached states a streaming frame attends to


# ----------------------------------------------------------------------------------- windows
@dataclass(frozen=True)
class Window:
    """One window to run: ``frames[p]`` is the clip frame whose input goes to position p.

    - ``refed``: positions whose input is the previous window's (its ``KEYFRAMES``, in order):
      their encoder features are the ones the caller kept from ``previous.keyframes``;
    - ``frame_count``: the clip's length, for windows planned at its end (else None).
    """

    index: int
    frames: tuple[int, ...]
    refed: tuple[int, ...]
    frame_count: int | None = None

    @property
    def start(self) -> int:
        """The frame of position 0 before re-feeding: positions from ``FIT`` on show frame start + p."""
        return self.index * STEP

    @property
    def keyframes(self) -> tuple[int, ...]:
        """Frames whose features the next window re-feeds (keep them; drop the others)."""
        return tuple(dict.fromkeys(self.frames[p] for p in KEYFRAMES))

    @property
    def last_frame(self) -> int:
        """The newest frame this window reads: later windows read no raw input up to it."""
        return max(self.frames)


class WindowPlanner:
    """Feed it the clip's frames one at a time (``push``), then ``finish``: it returns each window
    as soon as its frames have all arrived, and the last ones, padded, at the end."""

    def __init__(self) -> None:
        self.frames_seen = 0
        self._next = 0
        self._previous: Window | None = None
        self._finished = False

    def push(self) -> list[Window]:
        """One more frame arrived (frame ``frames_seen``, counting from 0): the windows ready now."""
        if self._finished:
            raise RuntimeError("push() after finish()")
        self.frames_seen += 1
        ready = []
        while self._next * STEP + WINDOW <= self.frames_seen:
            ready.append(self._plan(None))
        return ready

    def finish(self) -> list[Window]:
        """The clip ended: the remaining windows (every one starting before its end), padded."""
        if self._finished:
            return []
        self._finished = True
        ready = []
        while self._next * STEP < self.frames_seen:
            ready.append(self._plan(self.frames_seen))
        return ready

    def _plan(self, frame_count: int | None) -> Window:
        start = self._next * STEP
        last = frame_count - 1 if frame_count is not None else start + WINDOW - 1
        frames = [min(start + p, last) for p in range(WINDOW)]
        refed: tuple[int, ...] = ()
        if self._previous is not None:
            frames[:OVERLAP] = [self._previous.frames[p] for p in KEYFRAMES]
            refed = tuple(range(OVERLAP))
        window = Window(self._next, tuple(frames), refed, frame_count)
        self._previous, self._next = window, self._next + 1
        return window


def fit_scale_shift(prediction: np.ndarray, target: np.ndarray) -> tuple[np.float32, np.float32]:
    """s, t minimising sum (s prediction + t - target)^2, by the 2x2 normal equations in float32
    with NumPy's sums, as the original (its all-ones mask multiplies exactly, so it is left out):
    the same bits, not just the same values. A singular system (constant prediction) keeps 1, 0."""
    p = prediction.astype(np.float32, copy=False)
    t = target.astype(np.float32, copy=False)
    a00, a01, b0, b1 = np.sum(p * p), np.sum(p), np.sum(p * t), np.sum(t)
    # the count as the original sums it: float32 sums of ones are exact up to 2^24
    a11 = np.float32(p.size) if p.size <= 2 ** 24 else np.sum(np.ones_like(p))
    det = a00 * a11 - a01 * a01
    if det == 0:
        return np.float32(1), np.float32(0)
    return (a11 * b0 - a01 * b1) / det, (-a01 * b0 + a00 * b1) / det


def blend_weights(n: int = BLEND) -> list[float]:
    """The newer window's weight at each of the n seam frames, 0 to 1, computed as the
    original does (i x step: i / (n - 1) can differ in the last bit)."""
    step = 1.0 / (n - 1)
    return [0.0] + [i * step for i in range(1, n - 1)] + [1.0]


class WindowAligner:
    """Window depth (upsampled to the frame size, float32) in, final depth frames out.

    ``add`` returns (frame index, depth) for every frame no later seam can change; ``finish``
    the rest. Frames come out in order, each once, exactly the clip's frames (padding dropped).
    """

    def __init__(self, *, metric: bool) -> None:
        self.metric = metric
        self._next = 0
        self._frame_count: int | None = None
        self._tail: list[np.ndarray] = []  # aligned depth of the last window's positions 24..31
        self._tail_start = 0  # their first frame
        self._references: list[np.ndarray] = []  # what positions 0 and 1 of the next window fit

    @property
    def held_frames(self) -> int:
        """Depth frames kept between windows (at most ``BLEND + FIT`` = 10)."""
        return len(self._tail) + len(self._references)

    def add(self, window: Window, depth_thw: Sequence[np.ndarray]) -> list[tuple[int, np.ndarray]]:
        """The window's 32 depth frames, by position -> the frames final now."""
        if window.index != self._next:
            raise ValueError(f"window {window.index} out of order: expected window {self._next}")
        if len(depth_thw) != WINDOW:
            raise ValueError(f"a window has {WINDOW} depth frames, got {len(depth_thw)}")
        self._next += 1
        if window.frame_count is not None:
            self._frame_count = window.frame_count
        depth = [np.asarray(d).astype(np.float32, copy=False) for d in depth_thw]
        if window.index == 0:  # the first window sets the scale: taken as it is
            aligned = [d.copy() for d in depth]
            # copies: the caller owns what it is given and may change it in place
            self._references = [aligned[p].copy() for p in FIT_TARGETS]
            final = list(enumerate(aligned[:FINAL_BEFORE]))
        else:
            if self.metric:
                scale, shift = 1.0, 0.0
            else:
                scale, shift = fit_scale_shift(np.concatenate(depth[:FIT]), np.concatenate(self._references))
            aligned = [None] * FIT + [_affine_clipped(d, scale, shift) for d in depth[FIT:]]
            seam = [older * (1 - w) + newer * w
                    for older, newer, w in zip(self._tail, aligned[FIT:OVERLAP], blend_weights(), strict=True)]
            # the anchor (frame 0's depth in the first window) stays; the other reference moves on
            self._references = [self._references[0], aligned[FIT_TARGETS[1]].copy()]
            final = list(zip(range(self._tail_start, self._tail_start + BLEND), seam, strict=True))
            final += [(window.start + p, aligned[p]) for p in range(OVERLAP, FINAL_BEFORE)]
        self._tail = aligned[FINAL_BEFORE:]
        self._tail_start = window.start + FINAL_BEFORE
        return self._clip_end(final)

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """The clip ended (its last window added): the frames the last seam would have blended."""
        if self._next and self._frame_count is None:
            raise RuntimeError("finish() before the last window, which comes from WindowPlanner.finish()")
        final = list(zip(range(self._tail_start, self._tail_start + len(self._tail)), self._tail, strict=True))
        self._tail, self._references = [], []
        return self._clip_end(final)

    def _clip_end(self, final: list[tuple[int, np.ndarray]]) -> list[tuple[int, np.ndarray]]:
        if self._frame_count is None:
            return final
        return [(i, d) for i, d in final if i < self._frame_count]


def _affine_clipped(depth: np.ndarray, scale: float, shift: float) -> np.ndarray:
    out = depth * scale + shift
    out[out < 0] = 0
    return out


# ----------------------------------------------------------------------------------- streaming
class StreamCache:
    """Which earlier frames' temporal states a streaming frame attends to (the original
    ``infer_video_depth_one``), over opaque state objects.

    The first frame runs alone; its states then stand in for a full window (32 copies). Each later
    frame attends to ``context()``: the 2 oldest states held (frame 0's, and one that slides
    forward as old states are dropped) and the 29 newest, 31 in all, then its own states are
    ``add``-ed. Once 11 frames are in, each new frame drops the second-oldest held state, so 42
    are held from then on.
    """

    def __init__(self) -> None:
        self.frames_seen = 0
        self._states: list[object] = []
        self._frames: list[int] = []

    def context(self) -> list[object]:
        """The states the next frame attends to, oldest first ([] for the first frame)."""
        return self._pick(self._states)

    def context_frames(self) -> list[int]:
        """Which frames ``context()`` comes from (frame 0 for the first frame's copies)."""
        return self._pick(self._frames)

    @property
    def held(self) -> int:
        return len(self._states)

    def add(self, states: object) -> None:
        """The states the model returned for the newest frame (frame ``frames_seen``)."""
        frame = self.frames_seen
        if frame == 0:
            self._states, self._frames = [states] * WINDOW, [0] * WINDOW
        else:
            self._states.append(states)
            self._frames.append(frame)
        if frame + WINDOW > STREAM_GAP + 1:
            del self._states[1], self._frames[1]
        self.frames_seen += 1

    @staticmethod
    def _pick(held: list) -> list:
        return held[:STREAM_HEAD] + held[-STREAM_TAIL:] if held else []


class ContextSlots:
    """The streaming context held in place: ``STREAM_CONTEXT`` slots, each holding one cached
    state object, in any order (``TemporalAttention.attend_slots`` takes each slot's sequence
    position instead of a frame order).

    ``place(context)`` keeps every slot whose state is still in ``context`` (matched by
    identity: the same object is the same frame's states; frame 0's copies fill several slots)
    and says which states to write into the others. From one frame to the next
    ``StreamCache.context()`` gains the newest frame and, once frame 0's copies are used up,
    changes its second-oldest entry: at most two slots are written per frame, where
    concatenating the context copies all 31.
    """

    def __init__(self, slots: int = STREAM_CONTEXT) -> None:
        self._held: list[object | None] = [None] * slots

    def clear(self) -> None:
        """Forget what the slots hold (a new stream, or the runtime's buffers were replaced)."""
        self._held = [None] * len(self._held)

    def place(self, context: Sequence[object]) -> tuple[list[tuple[int, object]], list[int]]:
        """(writes, positions) for ``context`` (oldest first): ``writes`` = (slot, state) to copy
        into the runtime's slots, ``positions[slot]`` = that slot's place in ``context``, then the
        new frame's place, ``len(context)``."""
        n = len(self._held)
        if len(context) != n:
            raise ValueError(f"a streaming context of {len(context)} states for {n} slots")
        holding: dict[int, list[int]] = {}
        for slot, state in enumerate(self._held):
            if state is not None:
                holding.setdefault(id(state), []).append(slot)
        positions = [-1] * n
        unplaced = []
        for place, state in enumerate(context):
            slots = holding.get(id(state))
            if slots:
                positions[slots.pop()] = place
            else:
                unplaced.append(place)
        free = [slot for slot in range(n) if positions[slot] < 0]
        writes = []
        for slot, place in zip(free, unplaced, strict=True):
            self._held[slot] = context[place]
            positions[slot] = place
            writes.append((slot, context[place]))
        return writes, [*positions, n]
