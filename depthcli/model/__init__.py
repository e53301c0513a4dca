"""The Depth-Anything network (pure torch) and its checkpoint formats. No I/O beyond reading
weights, no printing."""
from .checkpoints import Checkpoint, CheckpointError, build_model, read_checkpoint, save_safetensors
from .configs import ENCODERS, EncoderConfig, ModelConfig
from .depth_anything import DepthAnything

__all__ = [
    "ENCODERS", "Checkpoint", "CheckpointError", "DepthAnything", "EncoderConfig", "ModelConfig",
    "build_model", "read_checkpoint", "save_safetensors",
]
