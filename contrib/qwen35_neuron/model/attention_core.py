"""Causal GQA attention by cache position: the reference twin of the flash-attention kernel.

Queries carry their absolute cache position; key slot j is visible to a query at position p iff
j <= p. This one rule covers a fresh prompt (keys = the bucket), a continuation of a chunked
prefill (keys = the whole cache) and a decode step, and right padding needs no extra mask:
a real query never sees a slot past its own position.
"""

from __future__ import annotations

import torch


def causal_gqa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_positions: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """q: [B, Hq, S, D]; k, v: [B, Hkv, T, D]; q_positions: [B, S]. Returns [B, Hq, S, D] (fp32 softmax)."""
    batch, num_heads, length, head_dim = q.shape
    num_kv = k.shape[1]
    group = num_heads // num_kv
    q = q.reshape(batch, num_kv, group * length, head_dim)  # heads of one KV group share its keys
    scores = (q @ k.transpose(-1, -2)).float() * scale  # [B, Hkv, G*S, T]
    slots = torch.arange(k.shape[2], device=q.device)
    visible = slots[None, None, :] <= q_positions[:, :, None]  # [B, S, T]
    visible = visible.repeat(1, group, 1)[:, None]  # [B, 1, G*S, T]
    scores = scores.masked_fill(~visible, torch.finfo(torch.float32).min)
    probs = scores.softmax(dim=-1).to(v.dtype)
    return (probs @ v).reshape(batch, num_heads, length, head_dim)
