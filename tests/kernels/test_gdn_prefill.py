"""gdn_prefill (fp32 and bf16 operands) == the chunked twin; state handling across calls."""

from __future__ import annotations

import pytest
import torch

from kernel_helpers import gdn_inputs, rel_err
from qwen35_neuron.kernels.nki_ops import load_kernel
from qwen35_neuron.model.gated_delta_rule import chunked_gated_delta_rule


def _prefill(*args, name="gdn_prefill", lnc=None):
    kernel = load_kernel(name)
    return kernel[lnc](*args) if lnc else kernel(*args)


def _twin(q, k, v, g, beta, state):
    """fp64 twin (a tighter reference than the fp32 one)."""
    out, s = chunked_gated_delta_rule(q.double(), k.double(), v.double(), g.double(), beta.double(),
                                      state.double())
    return out, s


@pytest.mark.parametrize("batch,seq,k_heads,v_heads,dim", [
    (1, 37, 1, 2, 16),     # one short chunk (C = 64), GQA 2
    (2, 150, 2, 4, 32),    # two chunks of 128, 150 not a multiple, batch 2
    (1, 20, 2, 2, 16),     # no GQA
])
def test_prefill_fp32_matches_twin(batch, seq, k_heads, v_heads, dim):
    args = gdn_inputs(batch, seq, k_heads, v_heads, dim, seed=seq)
    want_o, want_s = _twin(*args)
    got_o, got_s = _prefill(*args)
    assert rel_err(got_o, want_o) < 1e-4
    assert rel_err(got_s, want_s) < 1e-4


def test_prefill_bf16_variant_within_bf16_bound():
    args = gdn_inputs(1, 150, 1, 2, 32, seed=11, dtype=torch.bfloat16)
    want_o, want_s = _twin(*args)
    got_o, got_s = _prefill(*args, name="gdn_prefill_bf16")
    assert rel_err(got_o, want_o) < 2e-2
    assert rel_err(got_s, want_s) < 2e-2
    exact_o, _ = _prefill(*args)  # bf16 inputs, fp32 operands: still exact
    assert rel_err(exact_o, want_o) < 1e-4


def test_chunked_prefill_then_decode_equals_one_prefill():
    q, k, v, g, beta, state = gdn_inputs(2, 70, 1, 2, 16, seed=21)
    want_o, want_s = _twin(q, k, v, g, beta, state)
    o1, s1 = _prefill(q[:, :40], k[:, :40], v[:, :40], g[:, :40], beta[:, :40], state)
    o2, s2 = _prefill(q[:, 40:69], k[:, 40:69], v[:, 40:69], g[:, 40:69], beta[:, 40:69], s1, lnc=2)
    o3, s3 = load_kernel("gdn_decode")(q[:, 69:], k[:, 69:], v[:, 69:], g[:, 69:], beta[:, 69:], s2)
    assert rel_err(torch.cat([o1, o2, o3], dim=1), want_o) < 1e-4
    assert rel_err(s3, want_s) < 1e-4


def test_pads_leave_state_unchanged():
    q, k, v, g, beta, state = gdn_inputs(1, 50, 1, 2, 16, seed=31)
    g[:, 33:], beta[:, 33:] = 0.0, 0.0  # right padding: pads have g = 0, beta = 0
    _, padded_state = _prefill(q, k, v, g, beta, state)
    _, real_state = _prefill(q[:, :33], k[:, :33], v[:, :33], g[:, :33], beta[:, :33], state)
    assert rel_err(padded_state, real_state) < 1e-5


@pytest.mark.slow
def test_prefill_real_shape_tp8():
    """Qwen3.5-35B-A3B per rank at TP 8 (2 key / 4 value heads of 128), 200 tokens."""
    args = gdn_inputs(1, 200, 2, 4, 128, seed=41)
    want_o, want_s = _twin(*args)
    got_o, got_s = _prefill(*args)
    assert rel_err(got_o, want_o) < 1e-4
    assert rel_err(got_s, want_s) < 1e-4
