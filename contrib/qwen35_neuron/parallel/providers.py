"""Providers: the only place where a layer's parallel pieces come from.

The decoder code asks a provider for column-parallel and row-parallel linears, the embedding, the
LM head and an all-reduce, always in terms of *global* sizes. The provider decides what one rank
holds. Modules whose own plain parameters hold a rank's split (experts, the shared expert's linears,
DeltaNet's conv weight, ``dt_bias`` and ``A_log``) are built with ``provider.sharded(cls, ...)``: the
class itself on the CPU, a declared NxD-sharded subclass with ``nxd``.

- ``DenseProvider``: one rank, plain ``nn.Linear``; collectives are identities.
- ``SimulatedTPProvider``: rank r of R virtual ranks on the CPU. Each rank's module holds only its
  shard; all-reduce and all-gather are explicit sums / concatenations across the R rank threads
  (fixed rank order, so every rank gets bit-identical results).
- the ``nxd`` provider (in ``qwen35_neuron.neuron``) returns NxD ColumnParallel/RowParallel layers.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol, TypeVar

import torch
from torch import nn

from ..config.tp_shapes import local_size


M = TypeVar("M", bound=nn.Module)


class ParallelProvider(Protocol):
    tp_degree: int
    rank: int

    def column(self, in_features: int, out_features: int) -> nn.Module: ...

    def row(self, in_features: int, out_features: int) -> nn.Module: ...

    def embedding(self, vocab_size: int, hidden_size: int) -> nn.Module: ...

    def lm_head(self, hidden_size: int, vocab_size: int) -> nn.Module: ...

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor: ...

    def sharded(self, cls: type[M], *args: Any, **kwargs: Any) -> M:
        """A ``cls`` whose own plain parameters hold this rank's split, sized by the caller."""
        ...


class _PlainModules:
    """CPU providers: a module that owns split parameters is just its class (sizes are already local)."""

    def sharded(self, cls: type[M], *args: Any, **kwargs: Any) -> M:
        return cls(*args, **kwargs)


class _ReducedLinear(nn.Linear):
    """Row-parallel linear: local matmul on this rank's input slice, then a sum over ranks."""

    def __init__(self, in_features: int, out_features: int, provider: "ParallelProvider") -> None:
        super().__init__(in_features, out_features, bias=False)
        self._provider = [provider]  # a list keeps the provider out of the module tree

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._provider[0].all_reduce(super().forward(x))


class _GatheredLinear(nn.Linear):
    """Column-parallel linear whose output is gathered: the LM head over a vocabulary shard."""

    def __init__(self, in_features: int, out_features: int, gather) -> None:
        super().__init__(in_features, out_features, bias=False)
        self._gather = [gather]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._gather[0](super().forward(x))


class DenseProvider(_PlainModules):
    """One rank holding everything."""

    tp_degree = 1
    rank = 0

    def column(self, in_features: int, out_features: int) -> nn.Module:
        return nn.Linear(in_features, out_features, bias=False)

    def row(self, in_features: int, out_features: int) -> nn.Module:
        return nn.Linear(in_features, out_features, bias=False)

    def embedding(self, vocab_size: int, hidden_size: int) -> nn.Module:
        return nn.Embedding(vocab_size, hidden_size)

    def lm_head(self, hidden_size: int, vocab_size: int) -> nn.Module:
        return nn.Linear(hidden_size, vocab_size, bias=False)

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _ThreadGroup:
    """Collectives between R rank threads: each rank posts its tensor, all wait, all combine."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self._slots: list[torch.Tensor | None] = [None] * world_size
        self._barrier = threading.Barrier(world_size)

    def _exchange(self, rank: int, x: torch.Tensor) -> list[torch.Tensor]:
        self._slots[rank] = x
        self._barrier.wait()
        parts = list(self._slots)
        self._barrier.wait()  # nobody overwrites a slot before every rank has read all of them
        return parts

    def all_reduce(self, rank: int, x: torch.Tensor) -> torch.Tensor:
        parts = self._exchange(rank, x)
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    def all_gather_last(self, rank: int, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self._exchange(rank, x), dim=-1)

    def abort(self) -> None:
        """Release ranks blocked on the barrier when another rank failed."""
        self._barrier.abort()

    def reset(self) -> None:
        """Make the group usable again after an aborted call."""
        self._barrier.reset()


class SimulatedTPProvider(_PlainModules):
    """Rank ``rank`` of a simulated tensor-parallel group on the CPU."""

    def __init__(self, group: _ThreadGroup, rank: int) -> None:
        self.group = group
        self.tp_degree = group.world_size
        self.rank = rank

    def column(self, in_features: int, out_features: int) -> nn.Module:
        return nn.Linear(in_features, local_size(out_features, self.tp_degree, "column-parallel output"),
                         bias=False)

    def row(self, in_features: int, out_features: int) -> nn.Module:
        return _ReducedLinear(local_size(in_features, self.tp_degree, "row-parallel input"), out_features, self)

    def embedding(self, vocab_size: int, hidden_size: int) -> nn.Module:
        return nn.Embedding(vocab_size, hidden_size)  # replicated: lookups need no collective

    def lm_head(self, hidden_size: int, vocab_size: int) -> nn.Module:
        local = local_size(vocab_size, self.tp_degree, "vocab_size")
        return _GatheredLinear(hidden_size, local, lambda x: self.group.all_gather_last(self.rank, x))

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        return self.group.all_reduce(self.rank, x)


def simulated_tp_group(tp_degree: int) -> list[SimulatedTPProvider]:
    """One provider per rank, sharing one thread group."""
    group = _ThreadGroup(tp_degree)
    return [SimulatedTPProvider(group, rank) for rank in range(tp_degree)]
