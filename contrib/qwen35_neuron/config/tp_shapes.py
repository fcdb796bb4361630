"""What one rank holds under tensor parallelism, from the config and the TP degree alone.

Sizes and head ranges, no tensors: the model builds its per-rank modules from them, the state
layout sizes its buffers with them, and ``parallel.sharding`` cuts the weights by the same heads.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnsupportedConfigError
from .hf_config import TextConfig


@dataclass(frozen=True)
class HeadShard:
    """Which heads of a group of ``total`` heads rank r holds: [start, start + count)."""

    start: int
    count: int


def head_shard(total: int, tp_degree: int, rank: int, what: str) -> HeadShard:
    """Split heads evenly, or replicate them when there are fewer heads than ranks."""
    if total % tp_degree == 0:
        count = total // tp_degree
        return HeadShard(rank * count, count)
    if tp_degree % total == 0:
        return HeadShard(rank * total // tp_degree, 1)
    raise UnsupportedConfigError(
        f"{what} ({total}) and tp_degree {tp_degree} do not divide one another: choose a tp_degree that "
        f"divides {total} or is a multiple of it"
    )


def local_size(global_size: int, tp_degree: int, what: str) -> int:
    """Per-rank share of a dimension split evenly across ranks."""
    if global_size % tp_degree:
        raise UnsupportedConfigError(f"{what} ({global_size}) is not divisible by tp_degree {tp_degree}: "
                                     "choose a tp_degree that divides it")
    return global_size // tp_degree


def check_tp_supported(text: TextConfig, tp_degree: int) -> None:
    """Fail early, naming the dimension, when a TP degree cannot shard this model."""
    head_shard(text.num_key_value_heads, tp_degree, 0, "num_key_value_heads")
    head_shard(text.linear_num_key_heads, tp_degree, 0, "linear_num_key_heads")
    feed_forward = ([(text.moe_intermediate_size, "moe_intermediate_size"),
                     (text.shared_expert_intermediate_size, "shared_expert_intermediate_size")] if text.is_moe
                    else [(text.intermediate_size, "intermediate_size")])
    for value, what in ((text.num_attention_heads, "num_attention_heads"),
                        (text.linear_num_value_heads, "linear_num_value_heads"),
                        *feed_forward,
                        (text.vocab_size, "vocab_size")):
        if value % tp_degree:
            raise UnsupportedConfigError(f"{what} {value} is not divisible by tp_degree {tp_degree}")
