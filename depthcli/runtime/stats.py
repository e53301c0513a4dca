"""Per-frame timing and memory, and the end-of-run summary."""
from __future__ import annotations

import json
import resource
import statistics
import sys
from dataclasses import asdict, dataclass, field
from typing import IO


@dataclass
class FrameStats:
    name: str
    input_hw: tuple[int, int]
    processed_hw: tuple[int, int]
    infer_ms: float  # the model's forward pass alone (synchronised on CUDA)
    total_ms: float  # preprocessing + forward + upsampling back
    peak_mem_mb: float
    mem_kind: str  # "vram" (CUDA peak allocated) or "rss" (process peak resident set)
    device: str
    dtype: str
    backend: str = "torch"  # what ran the network: "torch" or "openvino" (runtime/backends)

    @property
    def engine(self) -> str:
        """``openvino cpu bf16``, ``torch cuda fp16``: backend, device type and precision."""
        precision = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(self.dtype, self.dtype)
        return f"{self.backend} {self.device.split(':')[0]} {precision}"

    def line(self) -> str:
        (h, w), (ph, pw) = self.input_hw, self.processed_hw
        mem = "VRAM" if self.mem_kind == "vram" else "RSS"
        return (f"{self.name}: {w}x{h} -> {pw}x{ph}, {self.infer_ms:.0f} ms "
                f"(total {self.total_ms:.0f} ms), peak {mem} {self.peak_mem_mb:.0f} MiB, {self.engine}")

    def to_json(self) -> str:
        d = asdict(self)
        d["input_hw"], d["processed_hw"] = list(self.input_hw), list(self.processed_hw)
        return json.dumps(d)


def peak_rss_mb() -> float:
    """Peak resident set of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def reset_peak_memory(device: str) -> None:
    """``device``: "cpu", "cuda:0", ... (torch is imported only for CUDA)."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(torch.device(device))


def peak_memory(device: str) -> tuple[float, str]:
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20, "vram"
    return peak_rss_mb(), "rss"


@dataclass
class RunSummary:
    frames: list[FrameStats] = field(default_factory=list)
    failed: int = 0
    wall_s: float = 0.0

    def add(self, s: FrameStats) -> None:
        self.frames.append(s)

    def line(self, unit: str = "image") -> str:
        n = len(self.frames)
        if not n:
            return f"0 {unit}s processed" + (f", {self.failed} failed" if self.failed else "")
        med = statistics.median(f.infer_ms for f in self.frames)
        rate = n / self.wall_s if self.wall_s > 0 else float("nan")
        peak = max(f.peak_mem_mb for f in self.frames)
        kind = "VRAM" if self.frames[-1].mem_kind == "vram" else "RSS"
        failed = f", {self.failed} failed" if self.failed else ""
        return (f"{n} {unit}{'s' if n != 1 else ''}{failed}: median {med:.0f} ms/{unit} inference, "
                f"{rate:.2f} {unit}s/s end to end, peak {kind} {peak:.0f} MiB, {self.frames[-1].engine}")


def write_jsonl(stream: IO[str], stats: FrameStats) -> None:
    stream.write(stats.to_json() + "\n")
    stream.flush()
