"""2D rotary position embedding (RoPE) on the queries and keys, as Depth Anything 3 uses it.

Each attention head's width is split in two: the first half rotates with the token's row, the
second with its column. Within a half, channel ``i`` and ``i + half/2`` form a pair rotated by
``position * base ** (-2k / half)`` (k = i mod half/2), i.e. ``x * cos + rotate_half(x) * sin``.

Positions are computed from the grid's size with tensor operations (no per-size cache): traced
once, the graph serves every grid. Angles are float32 (as in the original), their cos and sin
float32 (float64 for float64 tokens), then cast to the tokens' dtype; the original takes cos and
sin in the tokens' dtype, which only differs in reduced precision.

Depth Anything 3 gives the class/camera token position (0, 0) and patch ``(row, col)`` position
``(row + 1, col + 1)``; its "global" (cross-view) blocks put every patch at (1, 1) instead
(``same_position_tables``): for one view, attention there sees no patch layout at all.
"""
from __future__ import annotations

import torch

RopeTables = tuple[torch.Tensor, torch.Tensor]  # (cos, sin), each (tokens, head_dim)
ROPE_BASE = 100.0


def table_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the cos/sin tables: float64 for float64 tokens, float32 for all others."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def inverse_frequencies(head_dim: int, base: float = ROPE_BASE, device: torch.device | None = None) -> torch.Tensor:
    """The ``head_dim // 4`` rotation speeds of one axis, slowest last (float32)."""
    if head_dim % 4:
        raise ValueError(f"2D RoPE needs a head width divisible by 4, not {head_dim}")
    half = head_dim // 2
    exponents = torch.arange(0, half, 2, device=device).float() / half
    return 1.0 / (base ** exponents)


def tables_for_positions(positions_n2: torch.Tensor, head_dim: int, base: float = ROPE_BASE,
                         dtype: torch.dtype = torch.float32) -> RopeTables:
    """(cos, sin) over the whole head width for (row, col) positions of shape (N, 2). The angles
    are float32 whatever ``dtype`` (as the original's), their cos and sin taken in ``dtype``."""
    inv_freq = inverse_frequencies(head_dim, base, positions_n2.device)
    positions_n2 = positions_n2.float()
    rows = positions_n2[:, :1] * inv_freq  # (N, head_dim / 4)
    cols = positions_n2[:, 1:] * inv_freq
    angles = torch.cat((rows, rows, cols, cols), dim=-1).to(dtype)
    return angles.cos(), angles.sin()


def grid_positions(grid_h: int, grid_w: int, device: torch.device | None = None) -> torch.Tensor:
    """(1 + grid_h * grid_w, 2) float32 positions: (0, 0) for the leading token, then the
    patches row by row at (row + 1, col + 1)."""
    rows = torch.arange(grid_h, device=device, dtype=torch.float32)[:, None].expand(grid_h, grid_w)
    cols = torch.arange(grid_w, device=device, dtype=torch.float32)[None, :].expand(grid_h, grid_w)
    patches = torch.stack((rows.reshape(-1), cols.reshape(-1)), dim=-1) + 1
    return torch.cat((torch.zeros(1, 2, device=device), patches), dim=0)


def grid_tables(grid_h: int, grid_w: int, head_dim: int, base: float = ROPE_BASE,
                device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> RopeTables:
    return tables_for_positions(grid_positions(grid_h, grid_w, device), head_dim, base, dtype)


def same_position_tables(grid_h: int, grid_w: int, head_dim: int, base: float = ROPE_BASE,
                         device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> RopeTables:
    """Tables for the leading token at (0, 0) and every patch at (1, 1)."""
    positions = torch.tensor([[0.0, 0.0], [1.0, 1.0]], device=device)
    two = tables_for_positions(positions, head_dim, base, dtype)
    n = grid_h * grid_w
    return tuple(torch.cat((t[:1], t[1:].expand(n, head_dim)), dim=0) for t in two)  # type: ignore[return-value]


def apply_rope(x_bhnd: torch.Tensor, tables: RopeTables) -> torch.Tensor:
    """Rotate queries or keys (B, heads, N, head_dim) by their tokens' positions."""
    cos, sin = (t.to(x_bhnd.dtype) for t in tables)
    rows_a, rows_b, cols_a, cols_b = x_bhnd.chunk(4, dim=-1)
    rotated = torch.cat((-rows_b, rows_a, -cols_b, cols_a), dim=-1)
    return x_bhnd * cos + rotated * sin
