"""The ``nxd`` parallel provider: our model modules built from NxD parallel layers.

Projections become ``ColumnParallelLinear`` / ``RowParallelLinear`` (the row layer all-reduces),
the embedding a ``ParallelEmbedding`` split along the hidden dim (no rank arithmetic inside the
SPMD graph), the LM head a column layer, and the MoE block's single all-reduce NxD's mapping.

Our modules also hold plain per-rank parameters (experts, the shared expert, DeltaNet's conv
weight, ``dt_bias`` and ``A_log``). NxD's sharder only visits modules that are instances of its
parallel classes (``trace.shard_children``), so the model builds each owner through
``provider.sharded(cls, ...)``, which here returns the declared subclass that also derives from
``BaseParallelLinear`` - the same marker NxDI's own ``LearnedSink`` uses - with the owner's forward
unchanged (:data:`NXD_SHARDED`). :func:`mark_tp_parameters` then gives each split parameter NxD's
tensor-parallel attributes (partition dim from ``parallel.conversion.partition_dim``, stride 1), so
NxD cuts the rank-major converted checkpoint contiguously into exactly our shard.
"""

from __future__ import annotations

import torch
from torch import nn

from neuronx_distributed.parallel_layers.layers import (
    BaseParallelLinear,
    ColumnParallelLinear,
    ParallelEmbedding,
    RowParallelLinear,
    SPMDRank,
)
from neuronx_distributed.parallel_layers.mappings import reduce_from_tensor_model_parallel_region
from neuronx_distributed.parallel_layers.utils import set_tensor_model_parallel_attributes

from ..model.deltanet import ConvWeight, GatedDeltaNet
from ..model.moe import Experts
from ..parallel.conversion import partition_dim

_NXD_LAYERS = (ColumnParallelLinear, RowParallelLinear, ParallelEmbedding, SPMDRank)


class NxdShardedExperts(Experts, BaseParallelLinear):
    """Experts whose ``gate_up_proj`` / ``down_proj`` (this rank's intermediate slice) NxD shards."""


class NxdShardedLinear(nn.Linear, BaseParallelLinear):
    """A shared-expert linear whose weight (this rank's intermediate slice) NxD shards."""


class NxdShardedConvWeight(ConvWeight, BaseParallelLinear):
    """DeltaNet's depthwise conv weight (this rank's q, k and v channels), sharded by NxD."""


class NxdShardedGatedDeltaNet(GatedDeltaNet, BaseParallelLinear):
    """Gated DeltaNet whose own ``dt_bias`` and ``A_log`` (this rank's value heads) NxD shards; its
    projections are NxD parallel layers already."""


NXD_SHARDED: dict[type, type] = {Experts: NxdShardedExperts, nn.Linear: NxdShardedLinear,
                                 ConvWeight: NxdShardedConvWeight, GatedDeltaNet: NxdShardedGatedDeltaNet}


class NxdProvider:
    """Rank-independent provider for one SPMD graph: sizes are global, NxD layers hold the shards.

    ``rank`` is 0 because the graph is traced once for all ranks; nothing in our modules depends on
    it except which heads a rank holds, and that is decided by the checkpoint conversion.
    """

    rank = 0

    def __init__(self, tp_degree: int, dtype: torch.dtype, gather_logits: bool = True) -> None:
        self.tp_degree = tp_degree
        self.dtype = dtype
        self.gather_logits = gather_logits

    def column(self, in_features: int, out_features: int) -> nn.Module:
        return ColumnParallelLinear(in_features, out_features, bias=False, gather_output=False, dtype=self.dtype)

    def row(self, in_features: int, out_features: int) -> nn.Module:
        return RowParallelLinear(in_features, out_features, bias=False, input_is_parallel=True, dtype=self.dtype)

    def embedding(self, vocab_size: int, hidden_size: int) -> nn.Module:
        return ParallelEmbedding(vocab_size, hidden_size, dtype=self.dtype, shard_across_embedding=True)

    def lm_head(self, hidden_size: int, vocab_size: int) -> nn.Module:
        return ColumnParallelLinear(hidden_size, vocab_size, bias=False, gather_output=self.gather_logits,
                                    dtype=self.dtype)

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        return reduce_from_tensor_model_parallel_region(x)

    def sharded(self, cls: type, *args, **kwargs) -> nn.Module:
        if cls not in NXD_SHARDED:
            raise TypeError(f"{cls.__name__} owns split parameters but has no NxD-sharded form: declare one in "
                            f"{__name__}.NXD_SHARDED")
        return NXD_SHARDED[cls](*args, **kwargs)


def mark_tp_parameters(root: nn.Module, tp_degree: int) -> list[str]:
    """Mark every split plain parameter under ``root`` (names relative to it must be canonical) and
    return their names. Parameters of NxD's own parallel modules are left alone; a split parameter whose
    owner was not built with ``provider.sharded`` is an error (NxD would load it whole on every rank)."""
    marked: list[str] = []
    for prefix, module in root.named_modules():
        if isinstance(module, _NXD_LAYERS) or (isinstance(module, BaseParallelLinear)
                                               and type(module) not in NXD_SHARDED.values()):
            continue
        for name, param in module.named_parameters(recurse=False):
            full = f"{prefix}.{name}" if prefix else name
            dim = partition_dim(full)
            if dim is None or tp_degree == 1 or hasattr(param, "tensor_model_parallel"):
                continue
            if not isinstance(module, BaseParallelLinear):
                raise TypeError(f"{full} is split across ranks but its {type(module).__name__} was not built with "
                                "provider.sharded: NxD would not shard it")
            set_tensor_model_parallel_attributes(param, is_parallel=True, dim=dim, stride=1, num_partitions=tp_degree)
            marked.append(full)
    return marked
