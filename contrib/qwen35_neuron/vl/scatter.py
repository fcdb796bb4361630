"""Put image embeddings into the text embeddings at the image-token positions, with static shapes.

The host knows where every image token sits (data-dependent), so it builds two index tensors of
the CTE bucket's shape; the graph side is then a fixed gather + select whose shapes depend only on
(batch, bucket, table rows, hidden): the same compiled graph serves any placement of images, and
rows without images pass through untouched.

The image table is the vision tower's raw output, pack after pack, each pack's padded rows
included (``bucket // merge**2`` rows per pack). Padding rows are never pointed at, so the patch
bucket an image was run in cannot change the prompt's embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import InputError
from ..vision.packing import PackedImages


@dataclass(frozen=True)
class ScatterPlan:
    """Host-built indices for :func:`merge_image_embeddings` over [B, S] token slots."""

    source_index: torch.Tensor  # [B, S] int64: row of the image table for image tokens, 0 elsewhere
    is_image: torch.Tensor  # [B, S] bool: True at image-token positions

    @property
    def has_images(self) -> bool:
        return bool(self.is_image.any())


def table_offsets(packs: Sequence[PackedImages], merge: int) -> dict[int, int]:
    """Image id -> first row of its merged tokens in the concatenated tower outputs of ``packs``."""
    offsets: dict[int, int] = {}
    base = 0
    for pack in packs:
        for image_id, (start, _end) in zip(pack.image_ids, pack.token_slices):
            offsets[image_id] = base + start
        base += pack.bucket // (merge * merge)
    return offsets


def build_scatter_plan(prompts: Sequence[Sequence[int]], width: int, image_token_id: int,
                       image_rows: Sequence[Sequence[int]], offsets: dict[int, int],
                       token_counts: Sequence[int]) -> ScatterPlan:
    """Indices for expanded ``prompts`` right-padded to ``width``.

    ``image_rows[b]`` lists the (batch-wide) ids of row b's images in prompt order; image ``i``
    owns ``token_counts[i]`` consecutive table rows from ``offsets[i]``.
    """
    source = torch.zeros(len(prompts), width, dtype=torch.long)
    is_image = torch.zeros(len(prompts), width, dtype=torch.bool)
    for row, (prompt, images) in enumerate(zip(prompts, image_rows, strict=True)):
        table_rows = [offsets[i] + k for i in images for k in range(token_counts[i])]
        positions = [p for p, token in enumerate(prompt) if int(token) == image_token_id]
        if len(positions) != len(table_rows):
            raise InputError(
                f"prompt {row} has {len(positions)} image tokens but its images give {len(table_rows)} "
                "embeddings: write one placeholder per image and let the orchestrator expand it"
            )
        if positions:
            source[row, positions] = torch.tensor(table_rows, dtype=torch.long)
            is_image[row, positions] = True
    return ScatterPlan(source, is_image)


def merge_image_embeddings(text_embeds: torch.Tensor, image_table: torch.Tensor, source_index: torch.Tensor,
                           is_image: torch.Tensor) -> torch.Tensor:
    """[B, S, H] embeddings: ``image_table[source_index]`` where ``is_image``, else the text's.

    Traceable: no data-dependent control flow; ``image_table`` [M, H] needs M >= 1.
    """
    batch, seq, hidden = text_embeds.shape
    gathered = image_table.to(text_embeds.dtype).index_select(0, source_index.reshape(-1))
    return torch.where(is_image.unsqueeze(-1), gathered.view(batch, seq, hidden), text_embeds)
