"""Where the vision tower runs: the one injection point between the orchestrator and a backend.

A :data:`VisionRunner` takes one :class:`~qwen35_neuron.vision.packing.PackedImages` (a patch
bucket's worth of images with their host geometry) and returns the tower output for the whole
bucket, ``[bucket // merge**2, out_hidden]``. On the CPU it is the eager :class:`VisionTower`;
on Trainium2 the Neuron half passes a runner that picks the tower compiled for ``pack.bucket``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..errors import UnsupportedConfigError
from ..vision.loading import load_vision_tower  # noqa: F401 - re-exported for the VL sessions
from ..vision.packing import PackedImages

VisionRunner = Callable[[PackedImages], torch.Tensor]
TowerFn = Callable[..., torch.Tensor]  # VisionTower.forward's signature


def tower_runner(tower: TowerFn) -> VisionRunner:
    """A runner calling one tower (any bucket size: the eager module) on every pack."""

    @torch.no_grad()
    def run(pack: PackedImages) -> torch.Tensor:
        return tower(*pack.tower_inputs())

    return run


def per_bucket_runner(towers: Callable[[int], TowerFn]) -> VisionRunner:
    """A runner that asks ``towers(bucket)`` for the tower built for each pack's bucket."""

    @torch.no_grad()
    def run(pack: PackedImages) -> torch.Tensor:
        return towers(pack.bucket)(*pack.tower_inputs())

    return run


def run_packs(runner: VisionRunner, packs: Sequence[PackedImages], merge: int, hidden: int) -> torch.Tensor:
    """The image table: every pack's full tower output, in pack order ``[sum bucket // merge**2, hidden]``."""
    outputs = []
    for pack in packs:
        out = runner(pack)
        rows = pack.bucket // (merge * merge)
        if tuple(out.shape) != (rows, hidden):
            raise UnsupportedConfigError(
                f"the vision runner returned shape {tuple(out.shape)} for a bucket of {pack.bucket} patches; "
                f"expected ({rows}, {hidden}): the runner must return the whole bucket's merged tokens"
            )
        outputs.append(out)
    return torch.cat(outputs, dim=0)
