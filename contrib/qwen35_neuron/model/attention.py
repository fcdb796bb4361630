"""Gated full attention (the 'full_attention' layers): GQA with q/k norms, partial mRoPE, output gate.

``q_proj`` yields, per head, [query | gate]; the attention output is multiplied by sigmoid(gate)
before ``o_proj``. K/V caches [B, Hkv, S_max, D] are state in -> state out. New K/V are written at
each slot's cache position, in place; pad slots leave the cache as it was.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import TextConfig
from ..config.tp_shapes import head_shard
from ..parallel.providers import ParallelProvider
from .norms import OffsetRMSNorm
from .model_ops import ModelOps
from .rotary import apply_partial_rotary
from .step import StepInputs


def write_cache(cache: torch.Tensor, new: torch.Tensor, step: StepInputs) -> torch.Tensor:
    """cache [B, H, T, D] with new [B, H, S, D] written at the real slots' positions: one scatter into
    the cache itself (in place on the aliased buffer, as NxDI's KVCacheManager writes), never a
    rebuilt cache. A pad slot (or an idle row) writes back the value already at its index, position
    mod T: within a row the S indices are distinct and a pad's never meets a real slot's."""
    heads, capacity, dim = cache.shape[1], cache.shape[2], cache.shape[3]
    index = (step.positions % capacity)[:, None, :, None].expand(-1, heads, -1, dim)
    values = torch.where(step.valid[:, None, :, None], new.to(cache.dtype), cache.gather(2, index))
    return cache.scatter(2, index, values)


class GatedAttention(nn.Module):
    def __init__(self, config: TextConfig, provider: ParallelProvider) -> None:
        super().__init__()
        tp = provider.tp_degree
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads // tp
        self.num_kv_heads = head_shard(config.num_key_value_heads, tp, provider.rank, "num_key_value_heads").count
        hidden, dim = config.hidden_size, config.head_dim
        self.q_proj = provider.column(hidden, config.num_attention_heads * dim * 2)
        self.k_proj = provider.column(hidden, self.num_kv_heads * tp * dim)
        self.v_proj = provider.column(hidden, self.num_kv_heads * tp * dim)
        self.o_proj = provider.row(config.num_attention_heads * dim, hidden)
        self.q_norm = OffsetRMSNorm(dim, config.rms_norm_eps)
        self.k_norm = OffsetRMSNorm(dim, config.rms_norm_eps)
        self.scale = dim ** -0.5

    def forward(self, x: torch.Tensor, step: StepInputs, rotary: tuple[torch.Tensor, torch.Tensor],
                k_cache: torch.Tensor, v_cache: torch.Tensor,
                ops: ModelOps) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, length, _ = x.shape
        query, gate = self.q_proj(x).view(batch, length, self.num_heads, 2 * self.head_dim).chunk(2, dim=-1)
        key = self.k_proj(x).view(batch, length, self.num_kv_heads, self.head_dim)
        value = self.v_proj(x).view(batch, length, self.num_kv_heads, self.head_dim)
        cos, sin = rotary
        query = apply_partial_rotary(self.q_norm(query), cos, sin)
        key = apply_partial_rotary(self.k_norm(key), cos, sin)
        k_cache = write_cache(k_cache, key.transpose(1, 2), step)
        v_cache = write_cache(v_cache, value.transpose(1, 2), step)
        live = slice(0, step.attended)  # a token-generation bucket reads only the live part of the cache
        out = ops.attention(query.transpose(1, 2), k_cache[:, :, live], v_cache[:, :, live], step.positions,
                            self.scale)
        out = out.transpose(1, 2).reshape(batch, length, -1) * torch.sigmoid(gate.reshape(batch, length, -1))
        return self.o_proj(out), k_cache, v_cache
