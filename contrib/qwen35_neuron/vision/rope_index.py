"""Multimodal RoPE (mRoPE) position ids for prompts that mix text and images.

Each token gets three ids (temporal, height, width). Text tokens share one running counter on all
three axes. The placeholder tokens of an image take (t, row, col) indices of its merged grid, each
offset by the running counter; afterwards the counter advances by the image's larger merged side
(not by its token count), so text after an image continues from there. Padding positions (mask 0)
get id 0. ``rope_delta`` = (largest id + 1) - (real token count) per row: during decoding the
next token's id on every axis is (tokens so far) + rope_delta.

Same results as transformers' ``Qwen3_5MoeModel.get_rope_index``, with the placeholder kind taken
from the token ids. Videos are split into single frames (each frame is its own placeholder run,
separated by timestamp text), as HF does.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from ..config import ModelConfig
from ..errors import InputError
from .grid import Grid, as_grids

TEXT, IMAGE, VIDEO = 0, 1, 2
_KIND_NAMES = {IMAGE: "image", VIDEO: "video"}


def _token_kinds(ids: torch.Tensor, image_token_id: int, video_token_id: int) -> list[int]:
    kinds = torch.zeros_like(ids)
    kinds[ids == image_token_id] = IMAGE
    kinds[ids == video_token_id] = VIDEO
    return kinds.tolist()


def _runs(kinds: list[int]) -> list[tuple[int, int]]:
    """(kind, length) of each maximal run of equal kinds."""
    runs: list[tuple[int, int]] = []
    for kind in kinds:
        if runs and runs[-1][0] == kind:
            runs[-1] = (kind, runs[-1][1] + 1)
        else:
            runs.append((kind, 1))
    return runs


def _grid_positions(grid: Grid, merge: int, start: int) -> torch.Tensor:
    """[3, t*h'*w'] ids of one image's merged tokens (t-major, then rows, then columns)."""
    t, h, w = grid[0], grid[1] // merge, grid[2] // merge
    tt = torch.arange(t).view(t, 1, 1).expand(t, h, w)
    hh = torch.arange(h).view(1, h, 1).expand(t, h, w)
    ww = torch.arange(w).view(1, 1, w).expand(t, h, w)
    return torch.stack([tt, hh, ww]).reshape(3, -1) + start


def _vision_run(
    length: int, kind: int, grids: Iterator[Grid], merge: int, start: int
) -> tuple[list[torch.Tensor], int]:
    """Ids of a run of placeholder tokens; the run may hold several adjacent images."""
    pieces, covered, cursor = [], 0, start
    while covered < length:
        grid = next(grids, None)
        if grid is None:
            raise InputError(
                f"the prompt has more {_KIND_NAMES[kind]} placeholder tokens than the given grids describe: "
                f"pass one grid per {_KIND_NAMES[kind]} in prompt order"
            )
        ids = _grid_positions(grid, merge, cursor)
        covered += ids.shape[1]
        if covered > length:
            raise InputError(
                f"a run of {length} {_KIND_NAMES[kind]} placeholder tokens does not match the grids "
                f"(the {_KIND_NAMES[kind]} with grid {grid} needs {ids.shape[1]} tokens): build the prompt "
                "with t*h*w/merge**2 placeholders per image"
            )
        pieces.append(ids)
        cursor += max(grid[1], grid[2]) // merge
    return pieces, cursor


def _row_positions(
    ids: torch.Tensor, grid_iters: dict[int, Iterator[Grid]], merge: int, image_token_id: int, video_token_id: int
) -> torch.Tensor:
    pieces: list[torch.Tensor] = []
    cursor = 0
    for kind, length in _runs(_token_kinds(ids, image_token_id, video_token_id)):
        if kind == TEXT:
            pieces.append(torch.arange(cursor, cursor + length).expand(3, length))
            cursor += length
        else:
            run_pieces, cursor = _vision_run(length, kind, grid_iters[kind], merge, cursor)
            pieces.extend(run_pieces)
    return torch.cat(pieces, dim=1) if pieces else torch.zeros(3, 0, dtype=torch.long)


def mrope_position_ids(
    input_ids: torch.Tensor,
    image_grids: Sequence[Sequence[int]] | torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    *,
    video_grids: Sequence[Sequence[int]] | torch.Tensor | None = None,
    image_token_id: int = 248056,
    video_token_id: int = 248057,
    spatial_merge_size: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Position ids ``[3, B, S]`` (int64) and rope deltas ``[B, 1]`` for a (padded) batch.

    ``image_grids`` / ``video_grids`` are the patch grids (t, h, w) before merging, in the order
    their placeholders appear, row by row. ``attention_mask`` (1 real, 0 pad; left or right
    padding) excludes padding; padded positions get id 0.
    """
    if input_ids.dim() == 1:
        input_ids = input_ids.unsqueeze(0)
    batch, seq = input_ids.shape
    mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    if mask.shape != input_ids.shape:
        raise InputError(f"attention_mask shape {tuple(mask.shape)} differs from input_ids {tuple(input_ids.shape)}")
    frames = [(1, h, w) for t, h, w in as_grids(video_grids if video_grids is not None else []) for _ in range(t)]
    grid_iters = {IMAGE: iter(as_grids(image_grids if image_grids is not None else [])), VIDEO: iter(frames)}
    positions = torch.zeros(3, batch, seq, dtype=torch.long)
    deltas = torch.zeros(batch, 1, dtype=torch.long)
    for row in range(batch):
        real = input_ids[row][mask[row]]
        row_ids = _row_positions(real, grid_iters, spatial_merge_size, image_token_id, video_token_id)
        positions[:, row, mask[row]] = row_ids
        if real.numel():
            deltas[row, 0] = int(row_ids.max()) + 1 - real.numel()
    for kind, remaining in grid_iters.items():
        if next(remaining, None) is not None:
            raise InputError(
                f"more {_KIND_NAMES[kind]} grids were given than the prompt has {_KIND_NAMES[kind]}s: "
                f"add the {_KIND_NAMES[kind]} placeholder tokens or drop the extra grids"
            )
    return positions, deltas


def mrope_position_ids_for(
    config: ModelConfig,
    input_ids: torch.Tensor,
    image_grids: Sequence[Sequence[int]] | torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    video_grids: Sequence[Sequence[int]] | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`mrope_position_ids` with token ids and merge size taken from a model config."""
    merge = config.vision.spatial_merge_size if config.vision is not None else 2
    return mrope_position_ids(
        input_ids, image_grids, attention_mask, video_grids=video_grids,
        image_token_id=config.image_token_id, video_token_id=config.video_token_id, spatial_merge_size=merge,
    )


def decode_position_ids(tokens_so_far: torch.Tensor, rope_deltas: torch.Tensor, num_new: int = 1) -> torch.Tensor:
    """Ids ``[3, B, num_new]`` of the next ``num_new`` tokens of each row during decoding.

    ``tokens_so_far[b]`` counts row b's real tokens before the first new one (prompt + generated).
    """
    steps = tokens_so_far.long().view(-1, 1) + torch.arange(num_new).view(1, -1)
    return (steps + rope_deltas.long().view(-1, 1)).unsqueeze(0).expand(3, -1, -1).clone()
