"""The gated delta rule twins: chunk form == recurrent form == transformers' reference, with pads."""

from __future__ import annotations

import pytest
import torch

from qwen35_neuron.model.causal_conv import causal_conv1d
from qwen35_neuron.model.gated_delta_rule import chunked_gated_delta_rule, recurrent_gated_delta_rule, unit_lower_inverse


def _inputs(batch=2, length=37, k_heads=2, v_heads=4, dim=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, length, k_heads, dim, generator=gen)
    k = torch.randn(batch, length, k_heads, dim, generator=gen)
    v = torch.randn(batch, length, v_heads, dim, generator=gen)
    g = -torch.rand(batch, length, v_heads, generator=gen) * 2
    beta = torch.rand(batch, length, v_heads, generator=gen)
    state = torch.randn(batch, v_heads, dim, dim, generator=gen)
    return q, k, v, g, beta, state


@pytest.mark.parametrize("chunk", [1, 8, 16, 64])
def test_chunked_equals_recurrent(chunk):
    args = _inputs()
    out_r, state_r = recurrent_gated_delta_rule(*args)
    out_c, state_c = chunked_gated_delta_rule(*args, chunk_size=chunk)
    assert (out_r - out_c).abs().max() < 1e-5
    assert (state_r - state_c).abs().max() < 1e-5


def test_matches_transformers_reference():
    from transformers.models.qwen3_5_moe import modeling_qwen3_5_moe as hf

    q, k, v, g, beta, state = _inputs(length=21)
    ours, our_state = chunked_gated_delta_rule(q, k, v, g, beta, state, chunk_size=8)
    ref, ref_state = hf.torch_recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=state,
                                                         output_final_state=True, use_qk_l2norm_in_kernel=True)
    assert (ours - ref).abs().max() < 1e-5
    assert (our_state - ref_state).abs().max() < 1e-5


def test_pads_leave_state_unchanged_and_real_outputs_alone():
    q, k, v, g, beta, state = _inputs(length=13)
    real = 9
    g[:, real:] = 0.0
    beta[:, real:] = 0.0
    out_pad, state_pad = chunked_gated_delta_rule(q, k, v, g, beta, state, chunk_size=4)
    out_real, state_real = recurrent_gated_delta_rule(q[:, :real], k[:, :real], v[:, :real], g[:, :real],
                                                      beta[:, :real], state)
    assert (state_pad - state_real).abs().max() < 1e-5
    assert (out_pad[:, :real] - out_real).abs().max() < 1e-5
    all_pad = chunked_gated_delta_rule(q, k, v, torch.zeros_like(g), torch.zeros_like(beta), state)[1]
    assert torch.allclose(all_pad, state, atol=1e-6)


def test_prefill_then_decode_equals_one_prefill():
    q, k, v, g, beta, state = _inputs(length=10)
    _, whole = chunked_gated_delta_rule(q, k, v, g, beta, state, chunk_size=4)
    _, part = chunked_gated_delta_rule(q[:, :7], k[:, :7], v[:, :7], g[:, :7], beta[:, :7], state, chunk_size=4)
    for t in range(7, 10):
        _, part = recurrent_gated_delta_rule(q[:, t:t + 1], k[:, t:t + 1], v[:, t:t + 1], g[:, t:t + 1],
                                             beta[:, t:t + 1], part)
    assert (whole - part).abs().max() < 1e-5


def test_unit_lower_inverse_is_the_inverse():
    a = torch.randn(3, 16, 16).tril(-1) * 0.3
    eye = torch.eye(16)
    assert (unit_lower_inverse(a) @ (eye - a) - eye).abs().max() < 1e-5


def test_conv_state_is_the_last_real_inputs():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 5, generator=gen)
    weight = torch.randn(5, 4, generator=gen)
    state = torch.randn(2, 5, 3, generator=gen)
    y, new_state = causal_conv1d(x, state, weight, torch.tensor([6, 2]))
    assert torch.equal(new_state[0], x[0, 3:].T)
    assert torch.equal(new_state[1], torch.cat([state[1, :, 2:], x[1, :2].T], dim=1))
    # one call over 6 tokens == 6 single-token calls
    step_state, steps = state, []
    for t in range(6):
        out, step_state = causal_conv1d(x[:, t:t + 1], step_state, weight, torch.tensor([1, 1]))
        steps.append(out)
    assert (torch.cat(steps, dim=1)[0] - y[0]).abs().max() < 1e-6
    # a row with no tokens keeps its state
    _, kept = causal_conv1d(x, state, weight, torch.tensor([0, 0]))
    assert torch.equal(kept, state)
