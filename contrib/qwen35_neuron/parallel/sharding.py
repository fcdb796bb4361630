"""Tensor-parallel sharding of canonical (HF-named) text weights: what rank r of R holds.

This is the single definition of our TP layout. The ``simulated-tp`` backend builds its ranks from
it and the Neuron state-dict conversion stacks its per-rank output, so CPU tests of simulated TP
prove the conversion. Rules (a real TP run's, not "cut rows in R pieces"):

- DeltaNet ``in_proj_qkv`` / ``conv1d``: the q, k and v sections are each split by heads, and
  rank r gets [q_r | k_r | v_r]. Key heads are replicated when fewer than R.
- ``in_proj_z`` / ``in_proj_b`` / ``in_proj_a`` / ``dt_bias`` / ``A_log``: split by value heads.
- Attention ``q_proj`` (per head [query | gate]) split by head; KV heads split, or replicated
  when fewer than R (rank r keeps KV head r * Hkv // R).
- Out projections (``out_proj``, ``o_proj``, expert and shared-expert ``down_proj``) are
  row-parallel: split on their input dim. Experts and the dense family's MLP split on the
  intermediate dim.
- Norms, router, shared-expert gate and embeddings are replicated; the LM head splits the vocab.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch

from ..config import TextConfig
from ..config.tp_shapes import HeadShard, check_tp_supported, head_shard


def _heads(t: torch.Tensor, shard: HeadShard, head_dim: int, dim: int = 0) -> torch.Tensor:
    return t.narrow(dim, shard.start * head_dim, shard.count * head_dim)


def _even(t: torch.Tensor, tp_degree: int, rank: int, dim: int) -> torch.Tensor:
    size = t.shape[dim] // tp_degree
    return t.narrow(dim, rank * size, size)


def _deltanet_sections(t: torch.Tensor, text: TextConfig, tp_degree: int, rank: int) -> torch.Tensor:
    """[q | k | v] channel sections (dim 0), each split by its heads, re-stacked per rank."""
    q, k, v = torch.split(t, [text.linear_key_dim, text.linear_key_dim, text.linear_value_dim], dim=0)
    key = head_shard(text.linear_num_key_heads, tp_degree, rank, "linear_num_key_heads")
    value = head_shard(text.linear_num_value_heads, tp_degree, rank, "linear_num_value_heads")
    d_k, d_v = text.linear_key_head_dim, text.linear_value_head_dim
    return torch.cat([_heads(q, key, d_k), _heads(k, key, d_k), _heads(v, value, d_v)], dim=0)


def _experts_gate_up(t: torch.Tensor, tp_degree: int, rank: int) -> torch.Tensor:
    gate, up = t.chunk(2, dim=1)  # [E, 2I, H]: gate rows then up rows
    return torch.cat([_even(gate, tp_degree, rank, 1), _even(up, tp_degree, rank, 1)], dim=1)


@dataclass(frozen=True)
class _Split:
    """How rank r cuts one tensor kind: along ``dim``, by ``cut(tensor, text, tp, rank)``."""

    dim: int
    cut: Callable[[torch.Tensor, TextConfig, int, int], torch.Tensor]


def _by_heads(count: Callable[[TextConfig], int], head_dim: Callable[[TextConfig], int], what: str,
              dim: int = 0) -> _Split:
    def cut(t: torch.Tensor, text: TextConfig, tp: int, rank: int) -> torch.Tensor:
        return _heads(t, head_shard(count(text), tp, rank, what), head_dim(text), dim)
    return _Split(dim, cut)


def _evenly(dim: int) -> _Split:
    return _Split(dim, lambda t, text, tp, rank: _even(t, tp, rank, dim))


def _value_heads(head_dim: Callable[[TextConfig], int], dim: int = 0) -> _Split:
    return _by_heads(lambda c: c.linear_num_value_heads, head_dim, "linear_num_value_heads", dim)


_KV_HEADS = _by_heads(lambda c: c.num_key_value_heads, lambda c: c.head_dim, "num_key_value_heads")
_PER_HEAD_SCALAR = _value_heads(lambda c: 1)  # b, a, dt_bias, A_log: one value per head
_PER_HEAD_VECTOR = lambda dim=0: _value_heads(lambda c: c.linear_value_head_dim, dim)  # noqa: E731

# canonical per-layer (or top-level) name -> its TP split; every other tensor is replicated
SPLITS: dict[str, _Split] = {
    "linear_attn.in_proj_qkv.weight": _Split(0, _deltanet_sections),
    "linear_attn.conv1d.weight": _Split(0, _deltanet_sections),
    "linear_attn.in_proj_z.weight": _PER_HEAD_VECTOR(),
    "linear_attn.in_proj_b.weight": _PER_HEAD_SCALAR,
    "linear_attn.in_proj_a.weight": _PER_HEAD_SCALAR,
    "linear_attn.dt_bias": _PER_HEAD_SCALAR,
    "linear_attn.A_log": _PER_HEAD_SCALAR,
    "linear_attn.out_proj.weight": _PER_HEAD_VECTOR(dim=1),
    "self_attn.q_proj.weight": _evenly(0),
    "self_attn.k_proj.weight": _KV_HEADS,
    "self_attn.v_proj.weight": _KV_HEADS,
    "self_attn.o_proj.weight": _evenly(1),
    "mlp.experts.gate_up_proj": _Split(1, lambda t, text, tp, rank: _experts_gate_up(t, tp, rank)),
    "mlp.experts.down_proj": _evenly(2),
    "mlp.shared_expert.gate_proj.weight": _evenly(0),
    "mlp.shared_expert.up_proj.weight": _evenly(0),
    "mlp.shared_expert.down_proj.weight": _evenly(1),
    "mlp.gate_proj.weight": _evenly(0),  # the dense family's MLP
    "mlp.up_proj.weight": _evenly(0),
    "mlp.down_proj.weight": _evenly(1),
    "lm_head.weight": _evenly(0),
}
_LAYER_KEY = re.compile(r"^(?:mtp\.)?layers\.\d+\.(.+)$")  # decoder and MTP layers split alike


def split_of(name: str) -> _Split | None:
    """The TP split of canonical tensor ``name``; None when every rank holds all of it."""
    match = _LAYER_KEY.match(name)
    return SPLITS.get(match.group(1) if match else name)


def shard_text_tensor(name: str, tensor: torch.Tensor, text: TextConfig, tp_degree: int,
                      rank: int) -> torch.Tensor:
    """Rank ``rank``'s slice of canonical tensor ``name`` (a copy-free view where possible)."""
    split = split_of(name)
    if split is None or tp_degree == 1:
        return tensor
    return split.cut(tensor, text, tp_degree, rank)


def shard_text_state_dict(state: dict[str, torch.Tensor], text: TextConfig, tp_degree: int,
                          rank: int) -> dict[str, torch.Tensor]:
    """Rank ``rank``'s state dict, contiguous, from a full canonical state dict."""
    check_tp_supported(text, tp_degree)
    return {name: shard_text_tensor(name, t, text, tp_degree, rank).contiguous() for name, t in state.items()}
