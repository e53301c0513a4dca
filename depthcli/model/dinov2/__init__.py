"""DINOv2 ViT parts shared by every family (Depth Anything V1/V2, Depth Anything 3, Video Depth
Anything): patch embedding, the learned position encoding and its exact resize, attention,
transformer block, encoder. Options a family needs are constructor arguments, not copies."""
from .attention import Attention
from .block import LAYER_NORM_EPS, LayerScale, Mlp, TransformerBlock
from .encoder import DinoV2Encoder
from .patch_embed import PatchEmbedding
from .position_encoding import PositionEncoding

__all__ = ["LAYER_NORM_EPS", "Attention", "DinoV2Encoder", "LayerScale", "Mlp", "PatchEmbedding",
           "PositionEncoding", "TransformerBlock"]
