"""A vision-language batch, checked and laid out on the host before anything runs.

:func:`prepare_batch` does every data-dependent step (read and preprocess images, expand
placeholders, pack patches into vision buckets, mRoPE positions, scatter indices) and raises
:class:`~qwen35_neuron.errors.InputError` for any bad request. It reads no engine state and writes
none, so a rejected batch leaves every row exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ..config import ModelConfig, RunConfig, VisionConfig
from ..errors import InputError
from ..vision.grid import Grid, num_merged_tokens, num_patches
from ..vision.packing import PackedImages, check_buckets, pack_request
from ..vision.preprocess import ImageLike, ImageProcessorConfig, preprocess_images
from ..vision.rope_index import mrope_position_ids
from .placeholders import check_image_count, expand_placeholders
from .scatter import ScatterPlan, build_scatter_plan, table_offsets


@dataclass(frozen=True)
class VLRequest:
    """One prompt: token ids with one ``image_token_id`` per image, and the images in order."""

    input_ids: Sequence[int]
    images: Sequence[ImageLike] = field(default_factory=tuple)


@dataclass(frozen=True)
class PreparedBatch:
    """Everything the CTE calls need, built on the host for the whole prompts: a prompt longer than
    the largest context bucket runs in chunks, each taking its own slots of these tensors."""

    prompts: list[list[int]]  # expanded token ids per row
    width: int  # the longest prompt: every [B, S] tensor below has S = width
    grids: list[Grid]  # batch-wide, in image order (row by row, prompt order)
    packs: list[PackedImages]  # vision tower inputs, one per patch bucket used
    plan: ScatterPlan  # where the tower output goes
    rotary_positions: torch.Tensor  # [3, B, width] mRoPE ids (0 on padding)
    rope_deltas: list[int]  # per row: rotary id minus cache position for the tokens after the prompt

    @property
    def has_images(self) -> bool:
        return bool(self.grids)

    def padded_input_ids(self) -> torch.Tensor:
        ids = torch.zeros(len(self.prompts), self.width, dtype=torch.long)
        for row, prompt in enumerate(self.prompts):
            ids[row, : len(prompt)] = torch.tensor(prompt, dtype=torch.long)
        return ids


def _check_fits_bucket(row: int, index: int, grid: Grid, buckets: Sequence[int], vision: VisionConfig) -> None:
    largest = max(buckets)
    if num_patches(grid) > largest:
        t, h, w = grid
        pixels = largest * vision.patch_size ** 2 // t
        raise InputError(
            f"image {index} of prompt {row} has {num_patches(grid)} patches (grid t={t} x h={h} x w={w}) but the "
            f"largest vision bucket holds {largest}: shrink the image (max_pixels <= {pixels}) or add a vision "
            f"bucket of at least {num_patches(grid)} patches (RunConfig.vision_buckets, --vision-buckets)"
        )


def _preprocess_row(row: int, request: VLRequest, processor: ImageProcessorConfig, buckets: Sequence[int],
                    vision: VisionConfig) -> tuple[np.ndarray | None, list[Grid]]:
    if not request.images:
        return None, []
    try:
        processed = preprocess_images(list(request.images), processor)
    except InputError as err:
        raise InputError(f"prompt {row}: {err}") from err
    for index, grid in enumerate(processed.grids):
        _check_fits_bucket(row, index, grid, buckets, vision)
    return processed.pixel_values, list(processed.grids)


def prepare_batch(
    requests: Sequence[VLRequest],
    config: ModelConfig,
    run: RunConfig,
    processor: ImageProcessorConfig,
    validate_prompt: Callable[[list[int], int], None],
    max_new_tokens: int = 0,
    dtype: torch.dtype = torch.float32,
) -> PreparedBatch:
    """Check and lay out a batch; ``validate_prompt(ids, max_new_tokens)`` is the text session's check."""
    if not requests:
        raise InputError("no requests given: pass at least one prompt")
    image_id = config.image_token_id
    has_any_image = any(r.images for r in requests)
    if has_any_image and config.vision is None:
        raise InputError("images were given but the checkpoint has no vision tower: use a vision-language checkpoint")
    for row, request in enumerate(requests):  # cheap count checks first, before reading any image
        check_image_count(request.input_ids, len(request.images), image_id, row)
    buckets = check_buckets(run.vision_buckets, config.vision) if has_any_image else ()

    pixels: list[np.ndarray] = []
    grids: list[Grid] = []
    image_rows: list[list[int]] = []
    prompts: list[list[int]] = []
    merge = config.vision.spatial_merge_size if config.vision is not None else 1
    for row, request in enumerate(requests):
        row_pixels, row_grids = _preprocess_row(row, request, processor, buckets, config.vision)
        image_rows.append(list(range(len(grids), len(grids) + len(row_grids))))
        if row_pixels is not None:
            pixels.append(row_pixels)
        grids.extend(row_grids)
        prompts.append(expand_placeholders(request.input_ids, [num_merged_tokens(g, merge) for g in row_grids],
                                           image_id))
    for prompt in prompts:
        validate_prompt(prompt, max_new_tokens)
    width = max(len(p) for p in prompts)

    packs: list[PackedImages] = []
    if grids:
        packs = pack_request(torch.from_numpy(np.concatenate(pixels, axis=0)), grids, buckets, config.vision,
                             dtype=dtype)
    counts = [num_merged_tokens(g, merge) for g in grids]
    plan = build_scatter_plan(prompts, width, image_id, image_rows, table_offsets(packs, merge), counts)
    positions, deltas = _positions(prompts, width, grids, config, merge)
    return PreparedBatch(prompts, width, grids, packs, plan, positions, deltas)


def _positions(prompts: list[list[int]], width: int, grids: list[Grid], config: ModelConfig,
               merge: int) -> tuple[torch.Tensor, list[int]]:
    """mRoPE ids of the right-padded batch and each row's rope delta (0 for text-only rows).

    Videos are not served: the video token counts as text (no grids), as in a prompt without videos.
    """
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, : len(prompt)] = torch.tensor(prompt, dtype=torch.long)
        mask[row, : len(prompt)] = 1
    positions, deltas = mrope_position_ids(
        ids, grids, mask, image_token_id=config.image_token_id, video_token_id=-1,
        spatial_merge_size=merge,
    )
    return positions, [int(d) for d in deltas[:, 0].tolist()]
