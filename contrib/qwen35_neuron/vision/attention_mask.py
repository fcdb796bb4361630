"""Block-diagonal attention bias for packed images.

Several images share one bucket of patches; attention must never cross images (nor frames of a
video, as in HF where each frame is its own attention segment). Each patch carries a segment id;
padding patches share the id ``PAD_SEGMENT`` so they attend only to each other: every row keeps at
least one finite score (no NaN), and no real patch ever sees a padding patch.
"""

from __future__ import annotations

from typing import Sequence

import torch

PAD_SEGMENT = -1
# Finite in fp16/bf16/fp32; after softmax in fp32 a masked entry is exactly 0.
MASKED_VALUE = -65504.0


def segment_ids(grids: Sequence[tuple[int, int, int]], bucket: int) -> torch.Tensor:
    """Per-patch segment id ``[bucket]``: one id per frame of each image, ``PAD_SEGMENT`` after."""
    ids = torch.full((bucket,), PAD_SEGMENT, dtype=torch.long)
    start, segment = 0, 0
    for t, h, w in grids:
        for _ in range(t):
            ids[start:start + h * w] = segment
            start += h * w
            segment += 1
    return ids


def block_diagonal_bias(
    segments: torch.Tensor, dtype: torch.dtype = torch.float32, masked_value: float = MASKED_VALUE
) -> torch.Tensor:
    """Additive bias ``[N, N]``: 0 where query and key share a segment, ``masked_value`` elsewhere."""
    same = segments[:, None] == segments[None, :]
    bias = torch.zeros(same.shape, dtype=dtype)
    return bias.masked_fill(~same, masked_value)
