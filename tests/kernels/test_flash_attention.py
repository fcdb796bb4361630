"""flash_attention_d256 == causal_gqa_attention (positions-based causal mask, GQA, padding)."""

from __future__ import annotations

import pytest
import torch

from kernel_helpers import rel_err
from qwen35_neuron.kernels.nki_ops import load_kernel
from qwen35_neuron.model.attention_core import causal_gqa_attention


def _inputs(batch, heads, kv_heads, seq, keys, dim, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, seq, dim, generator=gen).to(dtype)
    k = torch.randn(batch, kv_heads, keys, dim, generator=gen).to(dtype)
    v = torch.randn(batch, kv_heads, keys, dim, generator=gen).to(dtype)
    pos = (torch.arange(seq)[None].repeat(batch, 1) + keys - seq).to(torch.int32)
    return q, k, v, pos


def _attention(q, k, v, pos, scale, causal_offset=-1):
    return load_kernel("flash_attention_d256")(q, k, v, pos, scale, causal_offset)


def test_fp32_continuation_with_right_padding():
    """Keys = a cache of 700 slots, queries = a 200-token continuation; row 1 is right-padded
    (its pads repeat the last position). Two key sections, GQA 2."""
    q, k, v, pos = _inputs(2, 4, 2, 200, 700, 256, torch.float32)
    pos[1, 120:] = pos[1, 119]
    want = causal_gqa_attention(q.double(), k.double(), v.double(), pos, 256 ** -0.5)
    got = _attention(q, k, v, pos, 256 ** -0.5)
    assert got.dtype == torch.float32
    assert rel_err(got, want) < 1e-5


def test_bf16_within_bf16_bound():
    q, k, v, pos = _inputs(1, 2, 1, 130, 130, 256, torch.bfloat16, seed=1)
    want = causal_gqa_attention(q.double(), k.double(), v.double(), pos, 256 ** -0.5)
    got = _attention(q, k, v, pos, 256 ** -0.5)
    assert got.dtype == torch.bfloat16
    assert rel_err(got, want) < 1e-2


def test_static_causal_offset_skips_tiles_and_matches_dynamic():
    """Positions = 0..S-1: the static path skips key tiles above the diagonal, same result."""
    q, k, v, pos = _inputs(1, 2, 1, 640, 640, 256, torch.bfloat16, seed=2)
    dynamic = load_kernel("flash_attention_d256")
    from qwen35_neuron.kernels.nki_emulator import run_kernel
    got_dyn, run_dyn = run_kernel(dynamic, q, k, v, pos, 0.0625, -1)
    got_sta, run_sta = run_kernel(dynamic, q, k, v, pos, 0.0625, 0)
    assert rel_err(got_sta, got_dyn) < 1e-6
    assert run_sta.cost.flops < run_dyn.cost.flops  # tiles above the diagonal were skipped


@pytest.mark.slow
def test_real_shape_tp4():
    """Per rank at TP 4: 4 query heads, 1 KV head, head_dim 256."""
    q, k, v, pos = _inputs(1, 4, 1, 256, 256, 256, torch.bfloat16, seed=3)
    want = causal_gqa_attention(q.double(), k.double(), v.double(), pos, 256 ** -0.5)
    assert rel_err(_attention(q, k, v, pos, 256 ** -0.5, 0), want) < 1e-2
