"""Video Depth Anything's OpenVINO graphs (``backends/openvino_temporal_graph``) give the torch
model's results in float32, at two patch grids (non-square both ways) from the same converted
graphs: the encoder's taps, a 32-frame window's depth, and 48 frames of streaming mode run
through ``StreamCache`` as ``runtime/temporal.StreamRun`` runs them, once on the torch model
(``TorchTemporalBackend``) and once on the graphs (``OpenVinoTemporalBackend``, the runtime's
own, over the converted graphs in memory).

A tiny network (64 wide, 4 blocks) with seeded random weights in which every tensor is
non-trivial (norms, biases, position table, class token), so no code path hides behind an
identity. Run with ``-s`` to see the errors.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from vda_reference import fit_last_conv

from depthcli.model.configs import PATCH_SIZE, encoder_for_shapes
from depthcli.model.video_depth_anything import StreamCache, VDAConfig, VideoDepthAnything
from depthcli.model.video_depth_anything.schedule import WINDOW
from depthcli.runtime.temporal import TorchTemporalBackend

pytest.importorskip("openvino")

from depthcli.runtime.backends.openvino_temporal_graph import (  # noqa: E402
    GRAPHS,
    NEW_STATES,
    PAST,
    STREAM_CONTEXT,
    TAPS,
    convert_temporal,
    state_channels,
    state_pixels,
)

TOL = 1e-5
GRIDS = [(4, 5), (6, 4)]  # patch grids: wider, then taller; 5 is odd (the 1/2x level rounds up)
STREAM_FRAMES = 48  # past 42: StreamCache drops old states, and the second-oldest slides (two slots written)
ENCODER = encoder_for_shapes(64, 4, 2, out_channels=(32, 32, 64, 64), features=64)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny networks: see conftest


@torch.no_grad()
def randomize_(model: VideoDepthAnything, seed: int) -> None:
    """Every constant tensor (norm gains and biases, layer scales, the class token, the position
    table) made random around its value, then the last convolution calibrated so depth spans
    ~0..10 before the final ReLU (almost nothing clipped)."""
    g = torch.Generator().manual_seed(seed)
    special = {"encoder.position_encoding.table": 0.6, "encoder.cls_token": 1.0}
    for name, p in model.named_parameters():
        if p.numel() > 1 and float(p.min()) == float(p.max()):  # ones: gains; zeros: biases
            std = special.get(name, 0.3 if float(p.max()) else 0.05)
            p.add_(torch.randn(p.shape, generator=g) * std)
    fit_last_conv(model, model.head.output.conv3, frames(8, (4, 5), seed).unsqueeze(0))


def frames(n: int, grid: tuple[int, int], seed: int) -> torch.Tensor:
    """(n, 3, 14 gh, 14 gw) normalised frames of a drifting scene: every frame differs."""
    g = torch.Generator().manual_seed(seed)
    h, w = grid[0] * PATCH_SIZE, grid[1] * PATCH_SIZE
    scene = torch.nn.functional.interpolate(torch.randn(1, 3, 5, 6, generator=g), size=(h, 2 * w),
                                            mode="bicubic", align_corners=False)
    shots = [scene[0, :, :, i * w // n:i * w // n + w] * (0.9 + 0.1 * np.sin(i / 4)) for i in range(n)]
    return torch.stack(shots) + 0.1 * torch.randn(n, 3, h, w, generator=g)


def rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    """max|a - b| / max|b|, in float64."""
    a, b = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != {b.shape}"
    assert np.isfinite(a).all() and np.abs(b).max() > 0
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def model() -> VideoDepthAnything:
    torch.manual_seed(5)
    m = VideoDepthAnything(VDAConfig(ENCODER)).eval()
    randomize_(m, 5)
    return m


@pytest.fixture(scope="module")
def converted(model: VideoDepthAnything) -> dict:
    graphs = convert_temporal(model)
    print("\nconversion: " + ", ".join(f"{name} {seconds:.1f} s" for name, (_, seconds) in graphs.items()))
    return graphs


@pytest.fixture(scope="module")
def ov_backend(model: VideoDepthAnything, converted: dict):  # noqa: ANN201 - OpenVinoTemporalBackend
    """The runtime's own backend over the converted graphs (in memory: no cache entry)."""
    from depthcli.runtime.backends.openvino_graph import position_table, recipe
    from depthcli.runtime.backends.openvino_temporal import OpenVinoTemporalBackend

    graphs = {name: graph for name, (graph, _) in converted.items()}
    return OpenVinoTemporalBackend({**recipe(model), "graphs": list(graphs)}, position_table(model), graphs=graphs,
                                   threads=1)


def stream_run(backend: object, clip_nchw: np.ndarray) -> list[np.ndarray]:
    """``runtime/temporal.StreamRun.push`` for each frame, at the network resolution."""
    cache, depth = StreamCache(), []
    for x in clip_nchw:
        x = x[None]
        grid_hw = (x.shape[-2] // PATCH_SIZE, x.shape[-1] // PATCH_SIZE)
        (features,) = backend.encode(x)
        depth_hw, states = backend.decode_stream(features, grid_hw, cache.context())
        cache.add(states)
        depth.append(depth_hw)
    return depth


def assert_structured(depth: np.ndarray) -> None:
    """A parity result means something only if the depth has real structure."""
    peak = float(np.abs(depth).max())
    assert peak > 0 and float(depth.std()) / peak > 0.05, "flat depth"
    assert float((depth == 0).mean()) < 0.05, "depth mostly clipped to zero"


# ----------------------------------------------------------------------------------- the graphs
def test_graph_inputs_and_outputs(model: VideoDepthAnything, converted: dict) -> None:
    c = ENCODER.embed_dim
    names = {name: ([p.get_any_name() for p in g.inputs], [p.get_any_name() for p in g.outputs])
             for name, (g, _) in converted.items()}
    assert tuple(names) == GRAPHS
    assert names["encoder"] == (["image", "position"], list(TAPS))
    assert names["window"] == ([*TAPS[2:], "grid"], ["path"])
    assert names["window_fine"] == ([*TAPS[:2], "path", "grid"], ["depth"])
    assert names["stream"] == ([*TAPS, "grid", *PAST, "positions"], ["depth", *NEW_STATES])
    assert names["stream_first"] == ([*TAPS, "grid"], ["depth", *NEW_STATES])
    shapes = {name: [str(p.get_partial_shape()) for p in g.inputs] for name, (g, _) in converted.items()}
    assert shapes["encoder"] == ["[?,3,?,?]", f"[1,?,{c}]"]
    assert shapes["window"] == [f"[{WINDOW},?,{c}]"] * 2 + ["[?,?]"]
    assert shapes["window_fine"] == [f"[?,?,{c}]"] * 2 + [f"[?,{ENCODER.features},?,?]", "[?,?]"]
    assert shapes["stream"] == [f"[1,?,{c}]"] * 4 + ["[?,?]"] + [f"[?,{STREAM_CONTEXT},{ch}]"
                                                             for ch in state_channels(model)] + [
        f"[{STREAM_CONTEXT + 1}]"]
    assert all(not p.get_partial_shape().is_static for g, _ in converted.values() for p in g.outputs)


def test_the_weights_are_not_trivial(model: VideoDepthAnything) -> None:
    """Every tensor random, and the frames of a clip do change each other's depth."""
    grid = GRIDS[0]
    with torch.no_grad():
        for name, p in model.named_parameters():
            assert p.numel() == 1 or float(p.min()) < float(p.max()), f"{name} is constant"
        features = model.encode(frames(WINDOW, grid, 1))
        together, _ = model.decode(features, *grid, WINDOW)
        alone, _ = model.decode(features, *grid, 1)  # 32 one-frame clips
    assert_structured(together.numpy())
    difference = rel_err(alone.numpy(), together.numpy())
    print(f"\nthe frames alone vs as one clip: max rel difference {difference:.2f}")
    assert difference > 0.02


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
def test_encoder_and_window(model: VideoDepthAnything, ov_backend,  # noqa: ANN001 - OpenVinoTemporalBackend
                            grid: tuple[int, int]) -> None:
    clip = frames(WINDOW, grid, seed=grid[0]).numpy()
    reference = TorchTemporalBackend(model)
    expected = reference.encode(clip)
    actual = ov_backend.encode(clip)  # all 32 in one call: N is dynamic too
    tap_err = max(rel_err(a, e.numpy()) for fa, fe in zip(actual, expected, strict=True)
                  for a, e in zip(fa, fe, strict=True))
    want = reference.decode_window(expected, grid)
    got = ov_backend.decode_window(actual, grid)
    assert got.shape == (WINDOW, grid[0] * PATCH_SIZE, grid[1] * PATCH_SIZE)
    assert_structured(want)
    window_err = rel_err(got, want)
    print(f"\n{grid}: encoder taps max rel err {tap_err:.1e}, window depth {window_err:.1e}")
    assert tap_err <= TOL and window_err <= TOL


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
def test_stream(model: VideoDepthAnything, ov_backend,  # noqa: ANN001 - OpenVinoTemporalBackend
                grid: tuple[int, int]) -> None:
    clip = frames(STREAM_FRAMES, grid, seed=10 + grid[1]).numpy()
    expected = stream_run(TorchTemporalBackend(model), clip)
    actual = stream_run(ov_backend, clip)
    # from the stream's third frame on, a model compiled for this grid (the dynamic one let go)
    assert ov_backend._static["stream"].shape == grid and "stream" not in ov_backend._compiled
    errors = [rel_err(a, e) for a, e in zip(actual, expected, strict=True)]
    assert_structured(np.stack(expected))
    # the states' layout: what the runtime caches and concatenates
    _, states = ov_backend.decode_stream(ov_backend.encode(clip[:1])[0], grid, [])
    assert [s.shape for s in states] == [(p, 1, c) for p, c in zip(state_pixels(*grid), state_channels(model),
                                                                   strict=True)]
    print(f"\n{grid}: {STREAM_FRAMES} streamed frames, max rel err per frame {max(errors):.1e} "
          f"(first frame {errors[0]:.1e})")
    assert max(errors) <= TOL


def test_encoder_gets_its_own_static_model(model: VideoDepthAnything, tmp_path) -> None:  # noqa: ANN001
    """A frame shape that repeats (a camera, a clip's windows) gets an encoder compiled for it,
    exported to the cache entry; the dynamic encoder is let go; a later run imports the static one
    at its first frame instead of compiling. Same taps as the dynamic encoder, to float rounding."""
    from depthcli.runtime.backends.openvino_cache import ModelCache
    from depthcli.runtime.backends.openvino_convert import backend_for_model
    from depthcli.runtime.backends.openvino_temporal import OpenVinoTemporalBackend

    cache = ModelCache(tmp_path)
    first = backend_for_model(model, threads=1, cache=cache, weights_sha256="7" * 64)
    clip = frames(3, GRIDS[0], seed=3).numpy()
    dynamic_taps = first.encode(clip[:1])  # first time: the dynamic encoder
    compiles = first.compiles
    assert "encoder" in first._compiled and "encoder" not in first._static
    static_taps = first.encode(clip[:1])  # second time: its own model, compiled and exported
    assert first.compiles == compiles + 1
    assert "encoder" not in first._compiled and first._static["encoder"].shape == clip[:1].shape
    err = max(rel_err(s, d) for s, d in zip(static_taps[0], dynamic_taps[0], strict=True))
    assert err <= TOL
    entry = first._entry
    name = f"encoder-static-{'x'.join(map(str, clip[:1].shape))}-f32-t1"
    assert entry.blob_path(name).exists()

    later = OpenVinoTemporalBackend.from_entry(entry, threads=1)
    again = later.encode(clip[:1])  # imported at the first frame: nothing compiled
    assert later.compiles == 0 and "encoder" in later._static
    assert max(rel_err(a, s) for a, s in zip(again[0], static_taps[0], strict=True)) == 0.0
    later.encode(clip)  # another shape: the dynamic encoder comes back
    assert "encoder" in later._compiled
