"""NxD's per-rank checkpoint files (``tp{r}_sharded_checkpoint.safetensors``), written tensor by tensor.

NxD shards a checkpoint by loading all of it, cutting every parameter for every rank and saving
each rank's dict (``ModelBuilder.shard_checkpoint``): for Qwen3.5-35B-A3B that is the 67 GB
checkpoint plus the per-rank copies in host memory at once. Here each canonical tensor is read,
cut for every rank and appended to the R open files before the next one is read, so memory stays
near one tensor; the files hold what NxD's sharder would write (names, per-rank shapes, dtypes,
values) - ``tests/real_sdk`` compares them with NxD's own ``get_sharded_checkpoint``.

The cut of each checkpoint tensor follows the attributes NxD's layers give their parameters
(:func:`nxd_split`): our rank-major tensors are cut contiguously along their partition dim (each
piece is made directly by :func:`~qwen35_neuron.parallel.conversion.converted_pieces`, never the whole converted
tensor), the embedding along the hidden dim (``ParallelEmbedding(shard_across_embedding=True)``),
NxD's expert ``gate_up_proj`` with stride 2, the SPMD rank tensors one entry per rank.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import torch

from ..checkpoint.memory import release_freed_memory
from ..checkpoint.safetensors_file import SafetensorsWriter
from ..config import TextConfig
from ..config.tp_shapes import check_tp_supported
from ..parallel.conversion import converted_pieces, partition_dim
from .layout import RANK_UTIL_KEY, nxd_moe_tensor, spmd_rank_tensors

Shape = tuple[int, ...]
_SPMD_RANK = re.compile(r"(^|\.)spmd_rank\.rank$")
_NXD_GATE_UP = re.compile(r"\.expert_mlps\.mlp_op\.gate_up_proj\.weight$")
_NXD_DOWN = re.compile(r"\.expert_mlps\.mlp_op\.down_proj\.weight$")


def rank_file_name(rank: int) -> str:
    """NxDI's name of rank ``rank``'s pre-sharded weights (``<compiled>/weights/<name>``)."""
    return f"tp{rank}_sharded_checkpoint.safetensors"


def nxd_split(name: str) -> tuple[int, int] | None:
    """(partition dim, stride) with which NxD's sharder cuts checkpoint tensor ``name`` (a name of
    :func:`~.layout.neuron_checkpoint`'s output); None when every rank gets all of it."""
    if name == "embed_tokens.weight":
        return 1, 1  # ParallelEmbedding(shard_across_embedding=True): each rank holds a slice of H
    if name == RANK_UTIL_KEY or _SPMD_RANK.search(name):
        return 0, 1
    if _NXD_GATE_UP.search(name):
        return 2, 2  # ExpertMLPsV2: [E, H, 2I] cut as [gate_r | up_r]
    if _NXD_DOWN.search(name):
        return 1, 1
    dim = partition_dim(name)
    return None if dim is None else (dim, 1)


def nxd_cut(tensor: torch.Tensor, split: tuple[int, int] | None, tp_degree: int, rank: int) -> torch.Tensor:
    """Rank ``rank``'s piece as NxD's ``create_local_weight`` makes it: ``tp * stride`` equal blocks
    along the dim, rank r taking blocks r, r + tp, ... (concatenated when the stride is > 1)."""
    if split is None or tp_degree == 1:
        return tensor
    dim, stride = split
    blocks = torch.split(tensor, tensor.shape[dim] // (tp_degree * stride), dim=dim)[rank::tp_degree]
    return blocks[0] if stride == 1 else torch.cat(blocks, dim=dim)


def rank_pieces(name: str, tensor: torch.Tensor, text: TextConfig, tp_degree: int,
                moe_backend: str = "ours") -> tuple[str, Iterator[torch.Tensor]]:
    """The checkpoint name NxD reads for ``name`` (canonical, or an SPMD rank tensor) and each rank's
    piece of it, made one at a time (views where the cut allows)."""
    nxd = nxd_moe_tensor(name, tensor, contiguous=False) if moe_backend == "nxd" else None
    if nxd is not None:
        name, tensor = nxd
    elif partition_dim(name) is not None:  # our rank-major layout: NxD's contiguous cut = our shard
        return name, converted_pieces(name, tensor, text, tp_degree)
    split = nxd_split(name)
    return name, (nxd_cut(tensor, split, tp_degree, rank) for rank in range(tp_degree))


def rank_plan(canonical: Mapping[str, Shape], text: TextConfig, tp_degree: int, moe_backend: str = "ours",
              dtype: torch.dtype = torch.bfloat16) -> list[tuple[str, list[Shape], torch.dtype]]:
    """(checkpoint name, per-rank shapes, dtype) of everything the per-rank files hold, in writing
    order: the walk of :func:`write_rank_checkpoints` on stand-ins of the canonical shapes (one byte
    broadcast to the shape: views cost nothing, a concatenated piece one byte per element)."""
    plan = []
    for name, shape in canonical.items():
        new_name, pieces = rank_pieces(name, torch.zeros((), dtype=torch.uint8).expand(shape), text, tp_degree,
                                       moe_backend)
        plan.append((new_name, [tuple(piece.shape) for piece in pieces], dtype))
    for name, tensor in spmd_rank_tensors(text, tp_degree, moe_backend):
        new_name, pieces = rank_pieces(name, tensor, text, tp_degree, moe_backend)
        plan.append((new_name, [tuple(piece.shape) for piece in pieces], tensor.dtype))
    return plan


def write_rank_checkpoints(tensors: Iterable[tuple[str, torch.Tensor]], canonical: Mapping[str, Shape],
                           text: TextConfig, tp_degree: int, out_dir: str | Path, *, moe_backend: str = "ours",
                           dtype: torch.dtype = torch.bfloat16, ranks: Iterable[int] | None = None) -> list[Path]:
    """Write ``tp{r}_sharded_checkpoint.safetensors`` for each rank in ``ranks`` (default all) from
    the canonical (name, tensor) stream ``tensors``, whose names and shapes ``canonical`` lists in
    order. Floating tensors are written in ``dtype`` (NxDI casts the model to it), the SPMD ranks
    in int32. One tensor is in memory at a time (plus one rank's piece when a cut copies)."""
    check_tp_supported(text, tp_degree)
    ranks = list(range(tp_degree) if ranks is None else ranks)
    if not ranks or any(not 0 <= rank < tp_degree for rank in ranks):
        raise ValueError(f"ranks {ranks} must lie in 0..{tp_degree - 1}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = rank_plan(canonical, text, tp_degree, moe_backend, dtype)
    release_freed_memory()
    writers = {rank: SafetensorsWriter(out_dir / rank_file_name(rank),
                                       [(name, shapes[rank], kind) for name, shapes, kind in plan])
               for rank in ranks}
    try:
        for name, tensor in itertools.chain(tensors, spmd_rank_tensors(text, tp_degree, moe_backend)):
            new_name, pieces = rank_pieces(name, tensor, text, tp_degree, moe_backend)
            del tensor  # the pieces keep what they need
            for rank in range(tp_degree):  # not enumerate(): its cached tuple would keep the last piece alive
                piece = next(pieces)
                if rank in writers:
                    writers[rank].write(new_name, piece.to(dtype) if piece.is_floating_point() else piece)
                del piece
            del pieces
            release_freed_memory()  # so the next tensor reuses memory the OS holds for us, not heap leftovers
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for writer in writers.values():
        writer.close()
    return [writers[rank].path for rank in ranks]
