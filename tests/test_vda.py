"""Video Depth Anything against the ORIGINAL code (DepthAnything/Video-Depth-Anything @ 4f5ae23,
unpacked from the parity snapshot ``upstream_vda.tar.gz``), on seeded random weights saved under
the published file names:

- the network (``forward`` on a clip);
- window mode: depthcli's model + ``WindowPlanner``/``WindowAligner``, fed one frame at a time
  and reusing re-fed keyframes' encoder features, against ``infer_video_depth``;
- streaming mode: depthcli's model + ``StreamCache`` against ``infer_video_depth_one``;
- checkpoints: metric-ness from the name, depthcli's safetensors round trip, V2 still V2, missing
  temporal weights refused.

Tiny inputs (42 px, vits): the whole file takes seconds. Run with ``-s`` to see the errors.
``DEPTHCLI_VDA_UPSTREAM`` may name the unpacked snapshot folder or the tarball; without either
(nor the parity folder beside the checkout) the comparisons are skipped.
"""
from __future__ import annotations

import contextlib
import io
import math
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from vda_reference import VITS, make_clip, original_classes, randomize_

from depthcli import load_model
from depthcli.model import CheckpointError, DepthAnything, read_checkpoint, save_safetensors
from depthcli.model.configs import ENCODERS, INVERSE_DEPTH, METRIC_DEPTH
from depthcli.model.video_depth_anything import (
    ContextSlots,
    StreamCache,
    VDAConfig,
    VideoDepthAnything,
    WindowAligner,
    WindowPlanner,
    network_size_rule,
)
from depthcli.model.video_depth_anything.model import concat_states, frame_features, stack_features
from depthcli.model.video_depth_anything.schedule import BLEND, FIT, WINDOW

TOL = 1e-5
SIZE = 42  # network input: 42 x 56 for the 48 x 64 clips
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny networks: see conftest


# ----------------------------------------------------------------------------------- the original
class Originals(types.SimpleNamespace):
    relative: torch.nn.Module  # original VideoDepthAnything (window mode), relative weights
    metric: torch.nn.Module
    stream: type  # the original streaming class
    relative_pth: Path  # video_depth_anything_vits.pth
    metric_pth: Path  # metric_video_depth_anything_vits.pth


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - yields Originals
    with original_classes(tmp_path_factory.mktemp("upstream")) as classes:
        yield _build_originals(classes.window, classes.stream, tmp_path_factory.mktemp("vda-checkpoints"))


def _build_originals(WindowVDA: type, StreamVDA: type, folder: Path) -> Originals:  # noqa: N803
    models = {}
    for metric in (False, True):
        torch.manual_seed(23 + metric)
        model = WindowVDA(**VITS, metric=metric).eval()
        randomize_(model, 23 + metric)
        name = ("metric_" if metric else "") + "video_depth_anything_vits.pth"
        torch.save(model.state_dict(), folder / name)
        models[metric] = (model, folder / name)
    return Originals(relative=models[False][0], metric=models[True][0], stream=StreamVDA,
                     relative_pth=models[False][1], metric_pth=models[True][1])


@pytest.fixture(scope="module")
def ours(originals: Originals) -> dict[bool, VideoDepthAnything]:
    """depthcli's models, loaded from the original files (relative: False, metric: True)."""
    return {False: load_model(originals.relative_pth, device="cpu"),
            True: load_model(originals.metric_pth, device="cpu")}


# ----------------------------------------------------------------------------------- clips
def _multiple_of_14(x: float, minimum: int) -> int:
    y = int(np.round(x / 14) * 14)
    return y if y >= minimum else int(math.ceil(x / 14) * 14)


def vda_input(frame_rgb: np.ndarray, size: int) -> torch.Tensor:
    """The original transform, written out: float32 / 255, cubic lower-bound resize to multiples
    of 14, float64 normalisation, float32 CHW."""
    h, w = frame_rgb.shape[:2]
    scale = max(size / h, size / w)
    nh, nw = _multiple_of_14(scale * h, size), _multiple_of_14(scale * w, size)
    resized = cv2.resize(frame_rgb.astype(np.float32) / 255.0, (nw, nh), interpolation=cv2.INTER_CUBIC)
    normed = (resized - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(normed.transpose(2, 0, 1)).astype(np.float32))


def to_frame_size(depth_nhw: torch.Tensor, h: int, w: int) -> np.ndarray:
    """Network-resolution depth -> (N, h, w) float32 at the frame size, as the original."""
    return F.interpolate(depth_nhw.float().unsqueeze(1), size=(h, w), mode="bilinear",
                         align_corners=True)[:, 0].numpy()


def max_rel_per_frame(ours: list[np.ndarray], ref: np.ndarray) -> float:
    assert len(ours) == len(ref), f"{len(ours)} frames, the original {len(ref)}"
    worst = 0.0
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape and a.dtype == np.float32
        assert float(np.abs(b).max()) > 0
        worst = max(worst, float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max()))
    return worst


# ----------------------------------------------------------------------------------- depthcli's runs
@torch.no_grad()
def window_mode(model: VideoDepthAnything, clip: np.ndarray, size: int) -> tuple[list[np.ndarray], dict]:
    """depthcli's window mode as a streaming caller runs it: frames arrive one at a time, each is
    encoded once (re-fed keyframes reuse their features), only what the schedule still needs is
    kept. Returns the depth frames and what was held at most."""
    h, w = clip.shape[1:3]
    size = network_size_rule(h, w, size)
    grid_h, grid_w = (d // 14 for d in vda_input(clip[0], size).shape[-2:])
    planner, aligner = WindowPlanner(), WindowAligner(metric=model.config.metric)
    inputs: dict[int, torch.Tensor] = {}  # preprocessed frames no window has encoded yet
    kept: dict = {}  # frame -> encoder features, for the keyframes the next window re-feeds
    out: dict[int, np.ndarray] = {}
    stats = {"encoded": 0, "inputs": 0, "kept": 0, "aligner": 0, "pending": 0}

    def run(window) -> None:  # noqa: ANN001
        new = sorted({f for f in window.frames if f not in kept})
        assert not {window.frames[p] for p in window.refed} - kept.keys(), "a re-fed frame was not kept"
        features = dict(kept)
        if new:  # a clip's last window can hold only frames the previous one had
            encoded = model.encode(torch.stack([inputs[f] for f in new]))
            features.update({f: frame_features(encoded, i) for i, f in enumerate(new)})
        stats["encoded"] += len(new)
        depth, _ = model.decode(stack_features([features[f] for f in window.frames]), grid_h, grid_w, WINDOW)
        final = aligner.add(window, to_frame_size(depth, h, w))
        stats["aligner"] = max(stats["aligner"], aligner.held_frames)
        out.update(final)
        kept.clear()
        kept.update({f: features[f] for f in window.keyframes})
        for f in [f for f in inputs if f <= window.last_frame]:
            del inputs[f]
        stats["kept"] = max(stats["kept"], len(kept))

    for i, frame in enumerate(clip):
        inputs[i] = vda_input(frame, size)
        stats["inputs"] = max(stats["inputs"], len(inputs))
        for window in planner.push():
            run(window)
        stats["pending"] = max(stats["pending"], i + 1 - len(out))
    for window in planner.finish():
        run(window)
    out.update(aligner.finish())
    assert sorted(out) == list(range(len(clip)))
    return [out[i] for i in range(len(clip))], stats


@torch.no_grad()
def stream_mode(model: VideoDepthAnything, clip: np.ndarray, size: int, expected_context=None,
                slots: bool = False) -> list[np.ndarray]:
    """Streaming as ``runtime/temporal.StreamRun`` drives it: the cached states concatenated in
    frame order (the torch backend), or held in place as ``ContextSlots`` places them (what the
    OpenVINO backend feeds its graph, here on the torch model's ``attend_slots``)."""
    h, w = clip.shape[1:3]
    size = network_size_rule(h, w, size)
    cache, placer, held = StreamCache(), ContextSlots(), None
    depth_frames = []
    for i, frame in enumerate(clip):
        x = vda_input(frame, size)[None]
        context = cache.context()
        if expected_context is not None:
            assert cache.context_frames() == expected_context[i], f"frame {i}"
        cached, positions = concat_states(context) if context else None, None
        if context and slots:
            writes, places = placer.place(context)
            if held is None:
                held = [torch.empty(c.shape) for c in cached]
            for slot, states in writes:
                for buffer, state in zip(held, states, strict=True):
                    buffer[:, slot] = state[:, 0]
            cached, positions = held, torch.tensor(places)
        depth, states = model.decode(model.encode(x), x.shape[-2] // 14, x.shape[-1] // 14, 1, cached, positions)
        cache.add(states)
        assert cache.held <= WINDOW + 10
        depth_frames.append(to_frame_size(depth, h, w)[0])
    return depth_frames


# ----------------------------------------------------------------------------------- the network
@pytest.mark.parametrize("metric", [False, True], ids=["relative", "metric"])
def test_forward_matches_the_original(originals: Originals, ours: dict, metric: bool) -> None:
    original = originals.metric if metric else originals.relative
    model = ours[metric]
    assert isinstance(model, VideoDepthAnything) and model.config.metric == metric
    x = torch.stack([vda_input(f, SIZE) for f in make_clip(WINDOW, 48, 64, seed=3)])[None]
    with torch.no_grad():
        expected, actual = original(x), model(x)
    assert actual.shape == expected.shape == (1, WINDOW, 42, 56)
    err = float((actual - expected).abs().max() / expected.abs().max())
    print(f"\nforward ({'metric' if metric else 'relative'}, 32 frames): max rel err {err:.1e}")
    assert err <= TOL
    # frames see each other: a clip's depth is not its frames' depth taken alone
    with torch.no_grad():
        alone = model(x[:, :1])
    assert float((alone[0, 0] - actual[0, 0]).abs().max()) > 1e-3


def test_memory_bounding_chunks_give_the_same_depth(originals: Originals, ours: dict,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The motion modules' pixel chunks and the head's 4-frame fine chunks change no value:
    forced small here (the parity cases are too small to split), the depth and the streaming
    states equal the unchunked run's."""
    from depthcli.model.video_depth_anything import head, temporal

    model = ours[False]
    x = torch.stack([vda_input(f, SIZE) for f in make_clip(WINDOW, 48, 64, seed=4)])
    with torch.no_grad():
        features = model.encode(x)
        whole, whole_states = model.decode(features, 3, 4, WINDOW)
        monkeypatch.setattr(temporal, "SEQUENCE_CHUNK", 5)
        monkeypatch.setattr(head, "FINE_CHUNK", 3)
        split, split_states = model.decode(features, 3, 4, WINDOW)
    assert float((split - whole).abs().max() / whole.abs().max()) <= 1e-6
    for a, b in zip(split_states, whole_states, strict=True):
        assert a.shape == b.shape and float((a - b).abs().max()) <= 1e-6 * max(float(b.abs().max()), 1.0)


# ----------------------------------------------------------------------------------- window mode
WINDOW_CASES = {
    "60 frames, 3 windows": (False, make_clip(60, 48, 64, seed=5)),
    "10 frames, under one window": (False, make_clip(10, 48, 64, seed=6)),
    "44 frames, a multiple of the step": (False, make_clip(44, 48, 64, seed=7)),
    "ultra-wide 26 frames": (False, make_clip(26, 40, 128, seed=8)),
    "metric, 50 frames": (True, make_clip(50, 48, 64, seed=9)),
}


@pytest.mark.parametrize("case", list(WINDOW_CASES))
def test_window_mode_matches_infer_video_depth(originals: Originals, ours: dict, case: str) -> None:
    metric, clip = WINDOW_CASES[case]
    original = originals.metric if metric else originals.relative
    with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):  # tqdm
        expected, _ = original.infer_video_depth(clip, 24, input_size=SIZE, device="cpu", fp32=True)
    actual, stats = window_mode(ours[metric], clip, SIZE)
    err = max_rel_per_frame(actual, expected)
    print(f"\nwindow mode, {case}: max rel err per frame {err:.1e}; held at most: {stats}")
    assert err <= TOL
    assert stats["encoded"] == len(clip), "every frame encoded exactly once (re-fed keyframes reused)"
    assert stats["aligner"] <= BLEND + FIT
    assert stats["kept"] <= 10 and stats["inputs"] <= WINDOW
    assert stats["pending"] <= WINDOW + BLEND  # frames in, not yet out: about one window


def test_ultra_wide_rule() -> None:
    assert network_size_rule(40, 128, SIZE) == 28  # ratio 3.2: int(42 * 1.777 / 3.2) = 23 -> 28
    assert network_size_rule(128, 40, SIZE) == 28
    assert network_size_rule(1080, 1920, 518) == 518  # 16:9 is not wider than 1.78
    assert network_size_rule(1080, 2560, 518) == round(int(518 * 1.777 / (2560 / 1080)) / 14) * 14 == 392
    assert network_size_rule(40, 128, SIZE, wide_ratio=None) == SIZE


def test_window_plan_and_aligner_bookkeeping() -> None:
    planner = WindowPlanner()
    ready = [w for _ in range(54) for w in planner.push()]
    assert [w.index for w in ready] == [0, 1]  # window 1 needs frames 22..53
    assert ready[0].frames == tuple(range(32)) and ready[0].refed == ()
    assert ready[1].frames == (0, 12, *range(24, 54)) and ready[1].refed == tuple(range(10))
    assert ready[1].keyframes == (0, 34, *range(46, 54)) and ready[1].last_frame == 53
    last = planner.finish()
    assert [w.index for w in last] == [2] and last[0].frame_count == 54
    assert last[0].frames == (0, 34, *range(46, 54), *[53] * 22)
    # the aligner emits every frame once, in order, padding dropped
    aligner = WindowAligner(metric=False)
    rng = np.random.default_rng(0)
    seen = []
    for w in [*ready, *last]:
        seen += [i for i, _ in aligner.add(w, rng.uniform(1, 2, (WINDOW, 3, 4)).astype(np.float32))]
    seen += [i for i, _ in aligner.finish()]
    assert seen == list(range(54))
    short = WindowPlanner()
    assert [w for _ in range(5) for w in short.push()] == []
    (only,) = short.finish()
    assert only.frames == (*range(5), *[4] * 27)
    assert WindowPlanner().finish() == []


# ----------------------------------------------------------------------------------- streaming mode
@pytest.mark.parametrize("slots", [False, True], ids=["concatenated", "slots"])
def test_stream_mode_matches_infer_video_depth_one(originals: Originals, ours: dict, slots: bool) -> None:
    clip = make_clip(50, 48, 64, seed=11)
    stream = originals.stream(**VITS).eval()
    stream.load_state_dict(originals.relative.state_dict(), strict=True)
    expected, expected_context = [], []
    with torch.no_grad():
        for frame in clip:
            ids = stream.frame_id_list
            expected_context.append(ids[0:2] + ids[-WINDOW + 3:] if ids else [])
            expected.append(stream.infer_video_depth_one(frame, input_size=SIZE, device="cpu", fp32=True))
    actual = stream_mode(ours[False], clip, SIZE, expected_context, slots=slots)
    err = max_rel_per_frame(actual, np.stack(expected))
    print(f"\nstreaming mode ({'slots' if slots else 'concatenated'}), 50 frames: max rel err per frame {err:.1e}")
    assert err <= TOL


def test_stream_cache_context() -> None:
    cache = StreamCache()
    assert cache.context() == []
    for i in range(50):
        cache.add(f"s{i}")
    assert cache.context()[0] == "s0" and len(cache.context()) == WINDOW - 1
    assert cache.context_frames() == [0, 9, *range(21, 50)]
    assert cache.held == 42


def test_context_slots_write_only_what_changed() -> None:
    """Slots written as ``ContextSlots`` says hold, read in ``positions`` order, exactly the
    context ``StreamCache`` gives, frame after frame; and after the first fill only the new
    frame and the sliding second-oldest one are written."""
    cache, placer = StreamCache(), ContextSlots()
    store: list[object] = [None] * (WINDOW - 1)
    assert cache.context() == []
    for frame in range(80):
        context = cache.context()
        if context:
            writes, positions = placer.place(context)
            for slot, state in writes:
                store[slot] = state
            assert positions[-1] == len(context) and sorted(positions[:-1]) == list(range(len(context)))
            in_order = [None] * len(context)
            for slot, place in enumerate(positions[:-1]):
                in_order[place] = store[slot]
            assert in_order == context, f"frame {frame}"
            # frame 1 fills every slot (frame 0's copies); then the newest frame, and from frame
            # 42 on also the second-oldest (until then one of frame 0's copies)
            assert len(writes) == (WINDOW - 1 if frame == 1 else 1 if frame < 42 else 2), f"frame {frame}"
        cache.add(object())
    placer.clear()  # a new stream: everything written again
    writes, _ = placer.place(cache.context())
    assert len(writes) == WINDOW - 1
    with pytest.raises(ValueError, match="slots"):
        placer.place(cache.context()[:5])


# ----------------------------------------------------------------------------------- checkpoints
def test_config_and_traits() -> None:
    cfg = VDAConfig(ENCODERS["vitl"], metric=True)
    assert cfg.taps == (4, 11, 17, 23) and cfg.family == "video_depth_anything" and cfg.max_depth is None
    assert VDAConfig.from_dict(cfg.to_dict()) == cfg
    t = cfg.traits
    assert (t.kind, t.resize, t.default_size, t.unit_dtype, t.align_corners, t.temporal, t.wide_ratio) == (
        METRIC_DEPTH, "lower_bound", 518, "float32", True, True, 1.78)
    assert VDAConfig(ENCODERS["vits"]).traits.kind == INVERSE_DEPTH
    assert type(t).from_dict(t.to_dict()) == t
    assert "Video Depth Anything vitl" in cfg.describe


def test_checkpoints(originals: Originals, ours: dict, tmp_path: Path) -> None:
    rel = read_checkpoint(originals.relative_pth)
    assert rel.layout == "original" and not rel.config.metric
    assert read_checkpoint(originals.metric_pth).config.metric
    x = torch.randn(1, 3, 3, 42, 56)
    # depthcli's own format round-trips, family and metric-ness in the metadata
    for metric in (False, True):
        path = tmp_path / f"mine{metric}.safetensors"
        save_safetensors(ours[metric], path)
        ck = read_checkpoint(path)
        assert ck.layout == "depthcli" and ck.config == ours[metric].config
        again = load_model(path, device="cpu")
        with torch.no_grad():
            assert torch.equal(again(x), ours[metric](x))
    state = torch.load(originals.relative_pth, weights_only=True)
    # a V2 checkpoint of the same encoder (no motion modules, depth_head.*) still reads as V2
    v2 = {("depth_" + k if k.startswith("head.") else k): v for k, v in state.items() if "motion_modules" not in k}
    torch.save(v2, tmp_path / "depth_anything_v2_vits.pth")
    assert isinstance(load_model(tmp_path / "depth_anything_v2_vits.pth", device="cpu"), DepthAnything)
    # temporal weights missing, all or some: one line
    no_motion = {k: v for k, v in state.items() if "motion_modules" not in k}
    torch.save(no_motion, tmp_path / "video_depth_anything_vits.pth")
    with pytest.raises(CheckpointError, match="none of its temporal") as e:
        load_model(tmp_path / "video_depth_anything_vits.pth", device="cpu")
    assert "\n" not in str(e.value)
    some = dict(state)
    del some["head.motion_modules.3.temporal_transformer.proj_out.weight"]
    torch.save(some, tmp_path / "video_depth_anything_vits.pth")
    with pytest.raises(CheckpointError, match="1 of its 112 temporal"):
        load_model(tmp_path / "video_depth_anything_vits.pth", device="cpu")
    # depthcli's own file without them: its metadata still says VDA
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(tmp_path / "mineFalse.safetensors"), framework="pt") as f:
        meta, mine = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    save_file({k: v for k, v in mine.items() if ".motion." not in k}, str(tmp_path / "x.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="none of its temporal"):
        load_model(tmp_path / "x.safetensors", device="cpu")
    bad = dict(state, **{"head.motion_modules.0.extra.weight": torch.zeros(1)})
    torch.save(bad, tmp_path / "video_depth_anything_vits.pth")
    with pytest.raises(CheckpointError, match="unexpected keys.*motion_modules.0.extra"):
        load_model(tmp_path / "video_depth_anything_vits.pth", device="cpu")
