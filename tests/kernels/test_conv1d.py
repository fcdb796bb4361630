"""causal_conv1d_cte / _tkg == causal_conv1d (SiLU output and the new conv state)."""

from __future__ import annotations

import torch

from kernel_helpers import rel_err
from qwen35_neuron.kernels.nki_ops import load_kernel
from qwen35_neuron.model.causal_conv import causal_conv1d


def _inputs(batch, seq, chans, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, seq, chans, generator=gen).to(dtype)
    state = torch.randn(batch, chans, 3, generator=gen).to(dtype)
    weight = torch.randn(chans, 4, generator=gen).to(dtype)
    return x, state, weight


def test_cte_fp32_ragged_lengths():
    x, state, weight = _inputs(3, 150, 256, torch.float32)
    valid = torch.tensor([150, 97, 0], dtype=torch.int32)  # full, right-padded, no real token
    want_y, want_s = causal_conv1d(x, state, weight, valid)
    got_y, got_s = load_kernel("causal_conv1d_cte")(x, state, weight, valid)
    assert rel_err(got_y, want_y) < 1e-5
    assert torch.equal(got_s, want_s)  # the state is a copy of history columns: exact


def test_cte_bf16_within_bf16_bound():
    x, state, weight = _inputs(1, 40, 128, torch.bfloat16, seed=1)
    valid = torch.tensor([33], dtype=torch.int32)
    want_y, want_s = causal_conv1d(x.float(), state.float(), weight.float(), valid)
    got_y, got_s = load_kernel("causal_conv1d_cte")(x, state, weight, valid)
    assert got_y.dtype == torch.bfloat16
    assert rel_err(got_y, want_y) < 1e-2
    assert torch.equal(got_s.float(), want_s)


def test_tkg_one_token_rows_with_and_without_a_token():
    x, state, weight = _inputs(4, 1, 256, torch.float32, seed=2)
    valid = torch.tensor([1, 0, 1, 1], dtype=torch.int32)
    want_y, want_s = causal_conv1d(x, state, weight, valid)
    got_y, got_s = load_kernel("causal_conv1d_tkg")(x, state, weight, valid)
    assert rel_err(got_y, want_y) < 1e-5
    assert torch.equal(got_s, want_s)
