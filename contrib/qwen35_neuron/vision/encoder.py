"""Backend-neutral image encoding: pack, run the tower per bucket, reassemble in image order.

``tower`` is any callable with the :class:`~qwen35_neuron.vision.tower.VisionTower` forward
signature: the eager CPU module, or a traced Neuron artifact chosen by bucket size.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..config import VisionConfig
from .grid import Grid
from .packing import pack_request

TowerFn = Callable[..., torch.Tensor]


def encode_images(
    tower: TowerFn | Callable[[int], TowerFn],
    pixel_values: torch.Tensor,
    grids: Sequence[Grid] | torch.Tensor,
    config: VisionConfig,
    buckets: Sequence[int],
    dtype: torch.dtype = torch.float32,
    per_bucket: bool = False,
) -> torch.Tensor:
    """Image embeddings ``[sum of merged tokens, out_hidden]``, images in the given order.

    With ``per_bucket=True``, ``tower(bucket)`` returns the callable compiled for that bucket.
    The result is what replaces the image placeholder tokens of the prompt, in prompt order.
    """
    packs = pack_request(pixel_values, grids, buckets, config, dtype=dtype)
    pieces: dict[int, torch.Tensor] = {}
    for pack in packs:
        run = tower(pack.bucket) if per_bucket else tower
        merged = run(*pack.tower_inputs())
        for image_id, piece in zip(pack.image_ids, pack.split_output(merged)):
            pieces[image_id] = piece
    if not pieces:
        return torch.zeros(0, config.out_hidden_size, dtype=dtype)
    return torch.cat([pieces[i] for i in range(len(pieces))], dim=0)
