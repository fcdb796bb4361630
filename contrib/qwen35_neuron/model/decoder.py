"""One decoder layer: pre-norm token mixer (DeltaNet or gated attention), then a pre-norm MoE (or the
dense family's MLP)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import LINEAR_ATTENTION, TextConfig
from ..parallel.providers import ParallelProvider
from .attention import GatedAttention
from .deltanet import GatedDeltaNet
from .mlp import DenseMlp
from .moe import SparseMoe
from .norms import OffsetRMSNorm
from .model_ops import ModelOps
from .step import StepInputs


class DecoderLayer(nn.Module):
    def __init__(self, config: TextConfig, layer: int, provider: ParallelProvider, *, moe_impl: str,
                 chunk_size: int, moe_block_size: int = 128, layer_type: str | None = None) -> None:
        """``layer_type`` overrides ``config.layer_types[layer]`` (the MTP head's layers are full attention)."""
        super().__init__()
        self.is_linear = (layer_type or config.layer_types[layer]) == LINEAR_ATTENTION
        if self.is_linear:
            # owns dt_bias and A_log (split by value heads) under their HF names
            self.linear_attn = provider.sharded(GatedDeltaNet, config, provider, chunk_size)
        else:
            self.self_attn = GatedAttention(config, provider)
        self.mlp = (SparseMoe(config, provider, moe_impl, moe_block_size) if config.is_moe
                    else DenseMlp(config, provider))
        self.input_layernorm = OffsetRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = OffsetRMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, hidden: torch.Tensor, step: StepInputs, rotary: tuple[torch.Tensor, torch.Tensor],
                states: tuple[torch.Tensor, torch.Tensor], ops: ModelOps):
        """states: (conv, recurrent) for DeltaNet layers, (k_cache, v_cache) for attention layers. In a
        speculative step a DeltaNet layer returns its states after every slot ([B, S, ...] each)."""
        normed = self.input_layernorm(hidden)
        if self.is_linear:
            mixed, *new_states = self.linear_attn(normed, step, *states, ops)
        else:
            mixed, *new_states = self.self_attn(normed, step, rotary, *states, ops)
        hidden = hidden + mixed
        normed = self.post_attention_layernorm(hidden)
        hidden = hidden + (self.mlp(normed, ops) if isinstance(self.mlp, SparseMoe) else self.mlp(normed))
        return hidden, tuple(new_states)
