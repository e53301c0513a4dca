"""Depth Anything V1 and V2 (relative and metric): the DINOv2 encoder with the DPT head."""
from .model import DepthAnything

__all__ = ["DepthAnything"]
