"""The hybrid cache layout: which layer owns which state buffer, with shapes and dtypes.

DeltaNet layers own ``conv_state`` [B, C_local, K-1] and ``recurrent_state`` [B, Hv_local, Dk, Dv]
(fp32 always); attention layers own ``k_cache`` and ``v_cache`` [B, Hkv_local, S_max, D]. Nothing
else: no dummy KV for DeltaNet layers. The flat order (layer by layer) is the order of the model's
state inputs and outputs, which the Neuron wrapper aliases one to one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import LINEAR_ATTENTION, TextConfig
from ..config.tp_shapes import head_shard


@dataclass(frozen=True)
class StateSpec:
    name: str  # e.g. "layers.0.conv_state"
    layer: int
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def kind(self) -> str:
        """conv_state | recurrent_state | k_cache | v_cache"""
        return self.name.rsplit(".", 1)[1]

    @property
    def nbytes(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count * torch.empty((), dtype=self.dtype).element_size()


def state_specs(text: TextConfig, batch_size: int, max_seq_len: int, dtype: torch.dtype,
                tp_degree: int = 1, rank: int = 0) -> list[StateSpec]:
    """Per-rank state buffers of one model, in layer order."""
    k_heads = head_shard(text.linear_num_key_heads, tp_degree, rank, "linear_num_key_heads").count
    v_heads = head_shard(text.linear_num_value_heads, tp_degree, rank, "linear_num_value_heads").count
    kv_heads = head_shard(text.num_key_value_heads, tp_degree, rank, "num_key_value_heads").count
    conv_channels = 2 * k_heads * text.linear_key_head_dim + v_heads * text.linear_value_head_dim
    specs: list[StateSpec] = []
    for layer, kind in enumerate(text.layer_types):
        prefix = f"layers.{layer}."
        if kind == LINEAR_ATTENTION:
            specs.append(StateSpec(prefix + "conv_state", layer,
                                   (batch_size, conv_channels, text.linear_conv_kernel_dim - 1), dtype))
            specs.append(StateSpec(prefix + "recurrent_state", layer,
                                   (batch_size, v_heads, text.linear_key_head_dim, text.linear_value_head_dim),
                                   torch.float32))
        else:
            for name in ("k_cache", "v_cache"):
                specs.append(StateSpec(prefix + name, layer,
                                       (batch_size, kv_heads, max_seq_len, text.head_dim), dtype))
    return specs


def zero_states(specs: list[StateSpec], device: torch.device | str = "cpu") -> list[torch.Tensor]:
    return [torch.zeros(spec.shape, dtype=spec.dtype, device=device) for spec in specs]


def mtp_state_specs(text: TextConfig, batch_size: int, max_seq_len: int, dtype: torch.dtype,
                    tp_degree: int = 1, rank: int = 0) -> list[StateSpec]:
    """Per-rank K/V buffers of the MTP head's one full-attention layer (``mtp.layers.0.*``)."""
    kv_heads = head_shard(text.num_key_value_heads, tp_degree, rank, "num_key_value_heads").count
    shape = (batch_size, kv_heads, max_seq_len, text.head_dim)
    return [StateSpec(f"mtp.layers.0.{name}", 0, shape, dtype) for name in ("k_cache", "v_cache")]
