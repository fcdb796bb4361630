"""The NxD checkpoint and state layout of our Neuron model, as pure functions (no Neuron import).

Checkpoint: the tensors NxD's sharder reads are our canonical names in rank-major layout
(:mod:`qwen35_neuron.parallel.conversion`), plus the names NxD modules add: ``rank_util.rank`` (NxDI's ``SPMDRank``,
``arange(tp)``, cut one entry per rank) and, with the NxD MoE backend, NxD's expert layout:

- ``mlp.gate.weight`` [E, H] -> ``mlp.router.linear_router.weight`` (replicated);
- ``mlp.experts.gate_up_proj`` [E, 2I, H] -> ``mlp.expert_mlps.mlp_op.gate_up_proj.weight``
  [E, H, 2I]: transposed only, *not* rank-major - NxD cuts it with stride 2 (rank r gets
  [gate_r | up_r]), which is exactly our per-rank expert shard;
- ``mlp.experts.down_proj`` [E, H, I] -> ``mlp.expert_mlps.mlp_op.down_proj.weight`` [E, I, H]
  (contiguous cut on I = our even split);
- ``mlp.expert_mlps.spmd_rank.rank`` = ``arange(tp)`` (NxD's expert MLPs own an SPMDRank).

State: one buffer per :func:`~qwen35_neuron.model.state.state_specs` entry, registered in that
order as ``past_key_values.{i}``; the i-th state output of every graph is aliased to buffer i.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch

from ..config import TextConfig
from ..config.tp_shapes import check_tp_supported
from ..model.state import StateSpec, mtp_state_specs, state_specs
from ..parallel.conversion import convert_text_tensor

RANK_UTIL_KEY = "rank_util.rank"
STATE_PARAMETER_PREFIX = "past_key_values"
MOE_BACKENDS = ("ours", "nxd")

_NXD_MOE = re.compile(r"^(layers\.\d+\.mlp\.)(gate\.weight|experts\.gate_up_proj|experts\.down_proj)$")
_NXD_MOE_NAMES = {
    "gate.weight": "router.linear_router.weight",
    "experts.gate_up_proj": "expert_mlps.mlp_op.gate_up_proj.weight",
    "experts.down_proj": "expert_mlps.mlp_op.down_proj.weight",
}


def rank_tensor(tp_degree: int) -> torch.Tensor:
    """The value NxD's SPMDRank parameters load: one int32 rank id per rank."""
    return torch.arange(tp_degree, dtype=torch.int32)


def nxd_moe_tensor(name: str, tensor: torch.Tensor, contiguous: bool = True) -> tuple[str, torch.Tensor] | None:
    """NxD MoE name and layout of a canonical router / expert tensor; None for any other tensor.
    ``contiguous=False`` returns the expert layout as a transposed view (no copy)."""
    match = _NXD_MOE.match(name)
    if match is None:
        return None
    prefix, part = match.groups()
    new = tensor if part == "gate.weight" else tensor.transpose(1, 2)
    return prefix + _NXD_MOE_NAMES[part], new.contiguous() if contiguous else new


def neuron_checkpoint(tensors: Iterable[tuple[str, torch.Tensor]] | dict[str, torch.Tensor], text: TextConfig,
                      tp_degree: int, moe_backend: str = "ours") -> Iterator[tuple[str, torch.Tensor]]:
    """Stream (name, tensor) of the checkpoint NxD shards, from canonical (name, tensor) pairs.

    Feed it :func:`~qwen35_neuron.checkpoint.iter_text_tensors` to convert the 67 GB checkpoint
    one tensor at a time. Works on ``meta`` tensors (shapes only).
    """
    if moe_backend not in MOE_BACKENDS:
        raise ValueError(f"moe_backend {moe_backend!r} is not one of {MOE_BACKENDS}")
    check_tp_supported(text, tp_degree)
    items = tensors.items() if isinstance(tensors, dict) else tensors
    for name, tensor in items:
        nxd = nxd_moe_tensor(name, tensor) if moe_backend == "nxd" else None
        out = nxd if nxd is not None else (name, convert_text_tensor(name, tensor, text, tp_degree))
        del tensor, nxd  # hold nothing while the stream reads the next tensor
        yield out
        del out
    yield from spmd_rank_tensors(text, tp_degree, moe_backend)


def spmd_rank_tensors(text: TextConfig, tp_degree: int, moe_backend: str = "ours") -> Iterator[tuple[str, torch.Tensor]]:
    """The rank tensors of NxD's SPMDRank modules: NxDI's ``rank_util`` and, with NxD's MoE, each
    layer's expert MLPs."""
    yield RANK_UTIL_KEY, rank_tensor(tp_degree)
    if moe_backend == "nxd" and text.is_moe:
        for layer in range(text.num_hidden_layers):
            yield f"layers.{layer}.mlp.expert_mlps.spmd_rank.rank", rank_tensor(tp_degree)


def tie_lm_head(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tied embeddings: the LM head reads the embedding matrix (a no-op when lm_head is present)."""
    if "lm_head.weight" not in state and "embed_tokens.weight" in state:
        state["lm_head.weight"] = state["embed_tokens.weight"]
    return state


@dataclass(frozen=True)
class StateBuffer(StateSpec):
    """One aliased state buffer of the Neuron model (per rank): a state spec with its position."""

    index: int = 0  # position in past_key_values and among the state outputs

    @property
    def parameter_name(self) -> str:
        return f"{STATE_PARAMETER_PREFIX}.{self.index}"


def state_buffers(text: TextConfig, batch_size: int, max_length: int, dtype: torch.dtype,
                  tp_degree: int, mtp: bool = False) -> list[StateBuffer]:
    """The hybrid cache of one rank: KV only for attention layers, conv + recurrent state only for
    DeltaNet layers, recurrent state fp32; with ``mtp`` (speculative decoding) the MTP head's K/V
    last. Identical for every rank and every graph (CTE, TKG, verify)."""
    check_tp_supported(text, tp_degree)
    specs = state_specs(text, batch_size, max_length, dtype, tp_degree, rank=0)
    if mtp:
        specs += mtp_state_specs(text, batch_size, max_length, dtype, tp_degree, rank=0)
    return [StateBuffer(spec.name, spec.layer, spec.shape, spec.dtype, index=i) for i, spec in enumerate(specs)]
