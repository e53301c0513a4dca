"""What a predictor is built from, as plain picklable data and without importing torch.

The CLI fills a ``PredictorSpec`` from its options; cluster workers and the server rebuild the
very same predictor from it (``runtime.loading.build_predictor``), so every door runs the same
model, backend and precision.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_SIZE = 518  # V1/V2/VDA's network input (shorter side); DA3's is 504 (its longer side)
DEFAULT_MODEL_ENV = "DEPTHCLI_MODEL"
BACKEND_ENV = "DEPTHCLI_BACKEND"  # = runtime.backends.BACKEND_ENV, read here without importing torch


@dataclass(frozen=True)
class PredictorSpec:
    model: str | None = None  # registry name or path; None: $DEPTHCLI_MODEL, else the registry default
    model_version: int | None = None
    device: str = "auto"
    precision: str | None = None  # None (fp32), "fp16" or "bf16"
    size: int | None = None  # network input size; None: the family's own (518, or 504 for DA3)
    max_side: int | None = None
    backend: str | None = None  # "auto", "torch" or "openvino"; None: $DEPTHCLI_BACKEND, else auto
    batch: int | None = None  # inputs of one network size per forward; None: 4 on CUDA, 1 on the CPU

    @property
    def source(self) -> str:
        """The model to load: the explicit one, else $DEPTHCLI_MODEL, else the registry default."""
        if self.model:
            return self.model
        env = os.environ.get(DEFAULT_MODEL_ENV)
        if env:
            return env
        from ..hub.registry import DEFAULT_MODEL

        return DEFAULT_MODEL

    @property
    def source_label(self) -> str:
        """The model as the user gave it, for messages: the ``--model`` value as typed, or
        ``$DEPTHCLI_MODEL=...`` when the variable chose it (so a bad one says where it came from)."""
        if self.model:
            return self.model
        env = os.environ.get(DEFAULT_MODEL_ENV)
        return f"${DEFAULT_MODEL_ENV}={env}" if env else self.source

    def backend_device_problem(self) -> str | None:
        """OpenVINO runs on the CPU: asked for together with an explicit GPU device it is a usage
        error on every machine, said before any device is probed (so the same command fails the
        same way with and without a GPU)."""
        backend = (self.backend or os.environ.get(BACKEND_ENV) or "auto").strip().lower()
        if backend != "openvino" or not (self.device.startswith("cuda") or self.device == "mps"):
            return None
        source = "--backend openvino" if self.backend else f"${BACKEND_ENV}=openvino"
        return f"{source} runs on the CPU, not {self.device}: use --device cpu (or auto), or --backend torch"
