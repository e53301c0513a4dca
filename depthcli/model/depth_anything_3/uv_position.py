"""The UV position embedding DualDPT adds to its feature maps (after each projection and after the
final upsample): 0.1 x sinusoids of the pixel's normalised image coordinates.

Coordinates span the map's aspect ratio, normalised by the diagonal: a map of h x w cells has
column centres ``u`` evenly spaced over ``+-span_x * (w - 1) / w`` with ``span_x = a / sqrt(a^2
+ 1)``, ``a = w / h`` (rows likewise with ``span_y = 1 / sqrt(a^2 + 1)``). Of the C channels, the
first half encodes ``u`` and the second ``v``, each as ``[sin(u * omega), cos(u * omega)]`` over
C/4 frequencies ``omega_k = 100 ** (-k / (C/4))``.

The aspect ratio the original passes is the input image's (W / H); every map DualDPT embeds
(the patch grid and the full-resolution output) has exactly that ratio, so it is read from the
map itself. Everything is computed from the map's shape with tensor operations (traced once,
right for every size) and per row and column, then broadcast: the same values as the original's
per-pixel grid at a fraction of the cost. The coordinates differ from ``torch.linspace``'s by at
most a rounding (~1e-7 in float32). Precision as in the original: the coordinates and sinusoids
in float32 (float64 for a float64 map), the frequencies and the embedding itself float32, then
cast to the map's dtype.
"""
from __future__ import annotations

import torch

UV_RATIO = 0.1
UV_OMEGA_0 = 100.0


def _centred(n: int, span: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """n evenly spaced coordinates from -span * (n - 1) / n to +span * (n - 1) / n."""
    return (torch.arange(n, device=device, dtype=dtype) * 2 - (n - 1)) * (span / n)


def _sincos(coords: torch.Tensor, channels: int) -> torch.Tensor:
    """(n, channels): [sin(c * omega), cos(c * omega)] for ``channels // 2`` frequencies."""
    omega = torch.arange(channels // 2, dtype=torch.float32, device=coords.device) / (channels / 2.0)
    omega = 1.0 / UV_OMEGA_0 ** omega
    angles = coords[:, None] * omega.to(coords.dtype)
    return torch.cat((angles.sin(), angles.cos()), dim=1).float()


def uv_embedding(h: int, w: int, channels: int, device: torch.device,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(channels, h, w) float32 embedding, already scaled by ``UV_RATIO``; ``dtype`` is that of
    the coordinates and sinusoids."""
    if channels % 4:
        raise ValueError(f"the UV embedding needs a channel count divisible by 4, not {channels}")
    aspect = w / h
    diagonal = (aspect * aspect + 1.0) ** 0.5
    emb_u = _sincos(_centred(w, aspect / diagonal, device, dtype), channels // 2) * UV_RATIO  # (w, C/2)
    emb_v = _sincos(_centred(h, 1.0 / diagonal, device, dtype), channels // 2) * UV_RATIO  # (h, C/2)
    half = channels // 2
    return torch.cat((emb_u.t()[:, None, :].expand(half, h, w), emb_v.t()[:, :, None].expand(half, h, w)), dim=0)


def add_uv_position(x_bchw: torch.Tensor) -> torch.Tensor:
    _, c, h, w = x_bchw.shape
    dtype = torch.float64 if x_bchw.dtype == torch.float64 else torch.float32
    return x_bchw + uv_embedding(h, w, c, x_bchw.device, dtype).to(x_bchw.dtype)
