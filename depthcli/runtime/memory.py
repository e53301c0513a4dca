"""Refuse a forward pass that cannot fit in memory *before* allocating it.

A thin panorama at the default ``--size`` or a huge ``--size`` asks for a network input of
hundreds of megapixels; left alone, the process allocates until the kernel's OOM killer ends
it (no message, no cleanup) or thrashes the machine. ``check_fits`` estimates what one forward
pass needs from the network input size and compares it with what is free.

The rule (bytes, for a network input of H x W pixels, T = (H/14)(W/14) + 1 tokens):

- encoder: ``16 * T * embed_dim * e``: the residual stream, qkv, the MLP's 4x hidden layer and
  the four tapped outputs. Attention is SDPA (or query-chunked), linear in T; the chunked
  kernel adds ``2 * heads * 256 * T * e`` for its score blocks;
- DPT head: ``(2.5 * features + 96) * H * W * e``: the last fusion level (8/14 of the input
  grid), the head's half-width layer upsampled to H x W, its 32-channel convolution, and the
  convolution workspace. Measured on the CPU (float32, SDPA): 500 B/px for a 32-feature model,
  750 B/px for vits (64 features), so the rule overestimates by about 1.4x;
- preprocessing: ``96 * H * W`` bytes of host memory (the float64 resize and normalisation).

``e`` is the element size of the model's dtype (4 for float32, 2 for fp16/bf16). On CUDA the
forward is compared with ``torch.cuda.mem_get_info`` and preprocessing with host memory; on the
CPU their sum is compared with host memory: ``MemAvailable`` from ``/proc/meminfo`` (else
``sysconf``), lowered to the cgroup limit minus usage when the process runs in one.

What is never refused: network inputs up to ``ALWAYS_ALLOWED_PIXELS`` (1036 x 1036, i.e. the
default 518 at any aspect ratio up to 4:1), whatever the machine reports, so normal runs never
depend on a momentary memory reading; and anything when ``DEPTHCLI_MEMORY_CHECK=0``. Memory
that scales with the *image* (decoding, the full-resolution depth and its PNG) is not counted:
``--max-pixels`` bounds that.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..model.configs import PATCH_SIZE, EncoderConfig

ALWAYS_ALLOWED_PIXELS = 1036 * 1036
ENCODER_FACTOR = 16  # activations per token and channel
HEAD_FEATURE_FACTOR = 2.5  # activations per pixel and fusion channel
HEAD_EXTRA = 96  # activations per pixel on top (the 32-channel head convolution, ReLU, output)
PREPROCESS_BYTES_PER_PIXEL = 96
ENV_SWITCH = "DEPTHCLI_MEMORY_CHECK"
CHUNK_QUERIES = 256  # model/dinov2/attention.CHUNK_QUERIES (not imported: it needs torch)
ELEMENT_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


class InsufficientMemoryError(MemoryError):
    """The forward pass for this input would not fit; one-line message with the numbers."""


def forward_bytes(h: int, w: int, encoder: EncoderConfig, dtype: str, device: str, frames: int = 1) -> int:
    """Estimated peak activation memory of one forward pass on an H x W network input
    (``dtype`` "float32"/"bfloat16"/"float16", ``device`` "cpu"/"cuda:0"/...). ``frames``: a
    clip model's head sees that many frames at once (Video Depth Anything's window: 32); its
    encoder still runs frame by frame."""
    e = ELEMENT_BYTES.get(str(dtype).removeprefix("torch."), 4)
    tokens = (h // PATCH_SIZE) * (w // PATCH_SIZE) + 1
    enc = ENCODER_FACTOR * tokens * encoder.embed_dim
    if str(device).startswith("cpu") and e == 2:  # the query-chunked attention kernel (model/dinov2/attention.py)
        enc += 2 * encoder.num_heads * CHUNK_QUERIES * tokens
    head = (HEAD_FEATURE_FACTOR * encoder.features + HEAD_EXTRA) * h * w * frames
    return int((enc + head) * e)


def preprocess_bytes(h: int, w: int) -> int:
    return PREPROCESS_BYTES_PER_PIXEL * h * w


def host_available_bytes() -> int | None:
    """Free host memory for this process: MemAvailable, capped by a cgroup limit; None if unknown."""
    free = _meminfo_available()
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = None
    room = _cgroup_room()
    if room is not None:
        free = room if free is None else min(free, room)
    return free


def device_available_bytes(device: str) -> int | None:
    if str(device).startswith("cuda"):
        import torch

        try:
            return int(torch.cuda.mem_get_info(torch.device(device))[0])
        except (RuntimeError, AssertionError):
            return None
    return None  # MPS shares host memory: the host figure applies


def check_fits(h: int, w: int, encoder: EncoderConfig, dtype: str, device: str, frames: int = 1) -> None:
    """Raise ``InsufficientMemoryError`` when an H x W network input clearly cannot fit."""
    if h * w * frames <= ALWAYS_ALLOWED_PIXELS or os.environ.get(ENV_SWITCH, "1") == "0":
        return
    forward, pre = forward_bytes(h, w, encoder, dtype, device, frames), preprocess_bytes(h, w)
    if str(device).startswith("cuda"):
        checks = [(forward, device_available_bytes(device), f"{device} memory"), (pre, host_available_bytes(), "RAM")]
    else:
        checks = [(forward + pre, host_available_bytes(), "RAM")]
    for need, have, what in checks:
        if have is not None and need > have:
            raise InsufficientMemoryError(
                f"not enough memory for a {w}x{h} network input: needs ~{_gib(need)}, "
                f"{_gib(have)} {what} available (use --max-side or a smaller --size)")


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """limit - usage of this process's memory cgroup (v2, else v1); None without a limit."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory.limit_in_bytes", "memory.usage_in_bytes")):
        for base in _cgroup_dirs():
            try:
                limit_text = (base / limit_file).read_text().strip()
                usage = int((base / usage_file).read_text().strip())
            except (OSError, ValueError):
                continue
            if limit_text == "max":
                return None
            try:
                limit = int(limit_text)
            except ValueError:
                return None
            if limit >= 2**60:  # v1's "no limit" is a huge number
                return None
            return max(0, limit - usage)
    return None


def _cgroup_dirs() -> list[Path]:
    """Where this process's memory cgroup files may be: its own path in v2 or v1, then the root."""
    dirs = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                dirs.append(Path("/sys/fs/cgroup") / path.lstrip("/"))
            elif "memory" in controllers.split(","):
                dirs.append(Path("/sys/fs/cgroup/memory") / path.lstrip("/"))
    except (OSError, ValueError):
        pass
    dirs += [Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory")]
    return dirs
