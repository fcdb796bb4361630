"""Per-patch geometry computed on the host from the image grids.

Everything here depends on the grid sizes (data), so it runs before the traced tower: the
(row, col) of each patch in the order the processor emits patches, the 2-D rotary cos/sin,
and the 4-tap bilinear resampling of the learned square position-embedding table.

A grid is ``(t, h, w)`` in patches (before the spatial merge). Patches come frame by frame, and
inside a frame in merge-block order: block rows, block columns, then the merge x merge patches of
the block row-major. That order makes each run of merge**2 consecutive patches one text token.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..config import VisionConfig
from ..errors import InputError

Grid = tuple[int, int, int]


def as_grids(grids: Sequence[Sequence[int]] | torch.Tensor) -> list[Grid]:
    """Normalise a grid list or an ``[n, 3]`` tensor to Python int triples."""
    if isinstance(grids, torch.Tensor):
        grids = grids.tolist()
    return [(int(t), int(h), int(w)) for t, h, w in grids]


def check_grid(grid: Grid, merge: int) -> None:
    t, h, w = grid
    if t < 1 or h < 1 or w < 1 or h % merge or w % merge:
        raise InputError(
            f"image grid (t={t}, h={h}, w={w}) is invalid: all sizes must be positive and h, w multiples of "
            f"spatial_merge_size {merge}; preprocess images with qwen35_neuron.vision.preprocess"
        )


def num_patches(grid: Grid) -> int:
    t, h, w = grid
    return t * h * w


def num_merged_tokens(grid: Grid, merge: int) -> int:
    """How many text-model placeholder tokens the image becomes."""
    return num_patches(grid) // (merge * merge)


def patch_coordinates(grid: Grid, merge: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, col) of every patch of one image, in the processor's merge-block order, all frames."""
    t, h, w = grid
    rows = torch.arange(h).view(h // merge, 1, merge, 1).expand(h // merge, w // merge, merge, merge)
    cols = torch.arange(w).view(1, w // merge, 1, merge).expand(h // merge, w // merge, merge, merge)
    return rows.reshape(-1).repeat(t), cols.reshape(-1).repeat(t)


def rotary_cos_sin(
    rows: torch.Tensor, cols: torch.Tensor, head_dim: int, theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """2-D rotary tables ``[N, head_dim]``: a quarter of the frequencies per axis, [h, w, h, w].

    The head is rotated as two halves (rotate_half), each half holding the row angles then the
    column angles, so row and column positions each turn half of every pair. ``theta`` is the
    vision config's ``rope_parameters.rope_theta`` (:attr:`VisionConfig.rope_theta`).
    """
    quarter = head_dim // 2
    inv_freq = 1.0 / (theta ** (torch.arange(0, quarter, 2, dtype=torch.float32) / quarter))
    angle_h = rows.float()[:, None] * inv_freq
    angle_w = cols.float()[:, None] * inv_freq
    angles = torch.cat([angle_h, angle_w, angle_h, angle_w], dim=-1)
    return angles.cos(), angles.sin()


def _axis_taps(index: torch.Tensor, size: int, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two source taps and weights per target index for align_corners=True linear resampling."""
    src = index.float() * (side - 1) / max(size - 1, 1)
    low = torch.floor(src)
    frac = src - low
    taps = torch.stack([low.long(), low.long() + 1], dim=-1).clamp(0, side - 1)
    weights = torch.stack([1.0 - frac, frac], dim=-1)
    return taps, weights


def position_embedding_taps(
    rows: torch.Tensor, cols: torch.Tensor, grid: Grid, num_position_embeddings: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``[N, 4]`` into the flat learned table and bilinear weights ``[N, 4]``.

    The table is a square ``side x side`` grid stretched (corners aligned) over the image's h x w.
    """
    side = math.isqrt(num_position_embeddings)
    _, h, w = grid
    h_taps, h_weights = _axis_taps(rows, h, side)
    w_taps, w_weights = _axis_taps(cols, w, side)
    index = (h_taps[:, :, None] * side + w_taps[:, None, :]).reshape(-1, 4)
    weight = (h_weights[:, :, None] * w_weights[:, None, :]).reshape(-1, 4)
    return index, weight


def image_geometry(grid: Grid, config: VisionConfig) -> dict[str, torch.Tensor]:
    """All per-patch host inputs of one image: pos_index, pos_weight, cos, sin (fp32 / int64)."""
    merge = config.spatial_merge_size
    check_grid(grid, merge)
    rows, cols = patch_coordinates(grid, merge)
    pos_index, pos_weight = position_embedding_taps(rows, cols, grid, config.num_position_embeddings)
    cos, sin = rotary_cos_sin(rows, cols, config.hidden_size // config.num_heads, config.rope_theta)
    return {"pos_index": pos_index, "pos_weight": pos_weight, "cos": cos, "sin": sin}
