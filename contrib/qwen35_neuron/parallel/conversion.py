"""HF -> Neuron state-dict conversion (pure torch, no Neuron import).

NxD shards a checkpoint by cutting each tensor into R contiguous pieces along its partition dim.
Our TP layout is not always a contiguous cut (DeltaNet's q/k/v sections, replicated KV heads,
experts' gate and up halves), so the conversion writes each tensor *rank-major*: the R per-rank
shards of :func:`shard_text_tensor` stacked along the partition dim. A contiguous cut of the
converted tensor is then exactly rank r's shard.

``simulated-tp`` builds its ranks from this output through :func:`rank_slice`, the same cut NxD
makes, so the CPU tests of simulated TP prove the conversion.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import torch

from ..config import TextConfig
from ..config.tp_shapes import check_tp_supported
from .sharding import shard_text_tensor, split_of

def partition_dim(name: str) -> int | None:
    """The dim along which tensor ``name`` is split across ranks, or None when replicated."""
    split = split_of(name)
    return None if split is None else split.dim


def convert_text_tensor(name: str, tensor: torch.Tensor, text: TextConfig, tp_degree: int) -> torch.Tensor:
    """One canonical tensor in Neuron (rank-major) layout."""
    dim = partition_dim(name)
    if dim is None or tp_degree == 1:
        return tensor
    return torch.cat(list(converted_pieces(name, tensor, text, tp_degree)), dim=dim).contiguous()


def converted_pieces(name: str, tensor: torch.Tensor, text: TextConfig, tp_degree: int) -> Iterator[torch.Tensor]:
    """The R equal pieces, rank by rank, whose concatenation along the partition dim is
    :func:`convert_text_tensor`'s output, i.e. exactly what NxD's contiguous cut gives each rank.
    Made one at a time, so a writer of per-rank files never holds the converted tensor whole."""
    if partition_dim(name) is None or tp_degree == 1:
        yield from (tensor for _ in range(tp_degree))
        return
    for rank in range(tp_degree):
        yield shard_text_tensor(name, tensor, text, tp_degree, rank)


def convert_text_state_dict(tensors: Iterable[tuple[str, torch.Tensor]] | dict[str, torch.Tensor],
                            text: TextConfig, tp_degree: int) -> Iterator[tuple[str, torch.Tensor]]:
    """Stream (name, converted tensor): feed it :func:`iter_text_tensors` to convert lazily."""
    check_tp_supported(text, tp_degree)
    items = tensors.items() if isinstance(tensors, dict) else tensors
    for name, tensor in items:
        out = convert_text_tensor(name, tensor, text, tp_degree)
        del tensor  # hold nothing while the stream reads the next tensor
        yield name, out
        del out


def rank_slice(name: str, converted: torch.Tensor, tp_degree: int, rank: int) -> torch.Tensor:
    """Rank ``rank``'s piece of a converted tensor: the contiguous cut NxD's sharding makes."""
    dim = partition_dim(name)
    if dim is None or tp_degree == 1:
        return converted
    size = converted.shape[dim] // tp_degree
    return converted.narrow(dim, rank * size, size).contiguous()
