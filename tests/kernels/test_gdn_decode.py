"""gdn_decode / gdn_decode_fused == the recurrent twin (one and k speculative tokens)."""

from __future__ import annotations

import pytest
import torch

from kernel_helpers import gdn_inputs, rel_err
from qwen35_neuron.kernels.gdn_fused_twin import fused_decode_reference
from qwen35_neuron.kernels.nki_ops import load_kernel
from qwen35_neuron.model.gated_delta_rule import recurrent_gated_delta_rule


def _run(name, *args, lnc=None):
    kernel = load_kernel(name)
    return kernel[lnc](*args) if lnc else kernel(*args)


@pytest.mark.parametrize("batch,seq,k_heads,v_heads,dim", [
    (2, 1, 2, 4, 32),    # GQA 2, two rows in one group
    (3, 3, 2, 2, 16),    # no GQA, 3 speculative tokens
    (2, 1, 1, 32, 16),   # 32 value heads read one key head: two groups per row
])
def test_decode_matches_twin_fp32(batch, seq, k_heads, v_heads, dim):
    args = gdn_inputs(batch, seq, k_heads, v_heads, dim)
    want_o, want_s = recurrent_gated_delta_rule(*args)
    got_o, got_s = _run("gdn_decode", *args)
    assert got_o.dtype == torch.float32 and got_s.dtype == torch.float32
    assert rel_err(got_o, want_o) < 1e-5
    assert rel_err(got_s, want_s) < 1e-5


def test_decode_bf16_inputs_and_lnc2():
    q, k, v, g, beta, state = gdn_inputs(5, 1, 2, 4, 32, seed=3, dtype=torch.bfloat16)
    want_o, want_s = recurrent_gated_delta_rule(q, k, v, g, beta, state)
    got_o, got_s = _run("gdn_decode", q, k, v, g, beta, state, lnc=2)
    # same bf16 inputs, fp32 math on both sides: fp32-level agreement
    assert rel_err(got_o, want_o) < 1e-5
    assert rel_err(got_s, want_s) < 1e-5


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_fused_decode_matches_gates_and_gated_norm(dtype, tol):
    q, k, v, _, _, state = gdn_inputs(2, 2, 2, 4, 32, seed=5, dtype=dtype)
    gen = torch.Generator().manual_seed(6)
    a, b = torch.randn(2, 2, 4, generator=gen), torch.randn(2, 2, 4, generator=gen)
    a_log, dt_bias = 0.5 * torch.randn(4, generator=gen), torch.randn(4, generator=gen)
    z = torch.randn(2, 2, 4, 32, generator=gen).to(dtype)
    weight = torch.rand(32, generator=gen) + 0.5
    want, want_s = fused_decode_reference(q, k, v, a, b, a_log, dt_bias, z, weight, state, 1e-6)
    got, got_s = _run("gdn_decode_fused", q, k, v, a, b, a_log, dt_bias, z, weight, state, 1e-6)
    assert got.dtype == dtype
    assert rel_err(got, want) < tol
    assert rel_err(got_s, want_s) < 1e-5


@pytest.mark.slow
def test_decode_real_shape_tp8():
    """Qwen3.5-35B-A3B per rank at TP 8: 2 key / 4 value heads of 128."""
    args = gdn_inputs(2, 1, 2, 4, 128, seed=7)
    want_o, want_s = recurrent_gated_delta_rule(*args)
    got_o, got_s = _run("gdn_decode", *args)
    assert rel_err(got_o, want_o) < 1e-5
    assert rel_err(got_s, want_s) < 1e-5


@pytest.mark.parametrize("batch", [1, 3, 4])
@pytest.mark.parametrize("lnc", [1, 2])
def test_fused_decode_splits_its_heads_over_both_cores(batch, lnc):
    """LNC 2, as nki-library's gdn_tkg: the (row, head) pairs are shared evenly by the two programs
    (a batch of one splits its heads), and the result equals the twin at LNC 1 and 2."""
    from qwen35_neuron.kernels.nki_emulator import run_kernel

    q, k, v, _, _, state = gdn_inputs(batch, 1, 4, 8, 32, seed=batch)
    gen = torch.Generator().manual_seed(batch)
    a, b = torch.randn(batch, 1, 8, generator=gen), torch.randn(batch, 1, 8, generator=gen)
    a_log, dt_bias = 0.5 * torch.randn(8, generator=gen), torch.randn(8, generator=gen)
    z, weight = torch.randn(batch, 1, 8, 32, generator=gen), torch.rand(32, generator=gen) + 0.5
    args = (q, k, v, a, b, a_log, dt_bias, z, weight, state, 1e-6)
    want, want_s = fused_decode_reference(*args)
    (got, got_s), run = run_kernel(load_kernel("gdn_decode_fused"), *args, lnc=lnc)
    assert rel_err(got, want) < 1e-5 and rel_err(got_s, want_s) < 1e-5
    state_bytes = [sum(r.hbm_bytes for r in rec.records if r.engine == "DMA") for rec in run.recorders]
    assert len(state_bytes) == lnc and max(state_bytes) - min(state_bytes) <= 0.05 * max(state_bytes)
