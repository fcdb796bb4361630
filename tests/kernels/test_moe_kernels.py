"""The MoE kernels against their twins, LNC 1 and 2: expert_decode (decode experts read in place by id)
and router_logits (fp32 logits from the weights as stored)."""

from __future__ import annotations

import pytest
import torch

from kernel_helpers import rel_err
from qwen35_neuron.kernels.nki_ops import EmulatorRunner, moe_decode_op, router_op
from qwen35_neuron.model.router_logits import fp32_router_logits
from qwen35_neuron.model.selected_experts import selected_experts


def _case(tokens, top_k, experts, hidden, inter, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, hidden, generator=gen).to(dtype)
    gate_up = (torch.randn(experts, 2 * inter, hidden, generator=gen) / hidden ** 0.5).to(dtype)
    down = (torch.randn(experts, hidden, inter, generator=gen) / inter ** 0.5).to(dtype)
    weights, ids = torch.randn(tokens, experts, generator=gen).softmax(-1).topk(top_k)
    ids[-1, -1] = ids[0, 0]  # an expert chosen by two tokens
    return x, weights / weights.sum(-1, keepdim=True), ids, gate_up, down


@pytest.mark.parametrize("lnc", [1, 2])
@pytest.mark.parametrize("shape", [(1, 2, 8, 64, 32), (3, 2, 8, 256, 128), (2, 3, 16, 128, 256)],
                         ids=["small", "two-tiles", "two-chunks"])
def test_equals_the_twin(lnc, shape):
    args = _case(*shape, torch.float32)
    runs = []
    got = moe_decode_op(EmulatorRunner(lnc=lnc, record=runs))(*args)
    assert rel_err(got, selected_experts(*args)) < 1e-5
    assert runs[-1][1].cost.programs == lnc


def test_bf16_within_bf16_rounding_and_only_the_chosen_rows_are_read():
    args = _case(3, 2, 8, 256, 128, torch.bfloat16)
    x, weights, ids, gate_up, down = args
    runs = []
    got = moe_decode_op(EmulatorRunner(lnc=2, record=runs))(*args)
    want = selected_experts(x.float(), weights, ids, gate_up.float(), down.float())
    assert rel_err(got, want) < 1e-2
    expert_bytes = ids.numel() * (gate_up[0].numel() + down[0].numel()) * 2
    assert expert_bytes < runs[-1][1].cost.hbm_bytes < expert_bytes * 1.02  # never all E experts


@pytest.mark.parametrize("lnc", [1, 2])
@pytest.mark.parametrize("tokens, experts, hidden", [(1, 8, 64), (3, 256, 256), (130, 600, 128)],
                         ids=["decode", "35B-experts", "two-tiles-two-blocks"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_router_logits_equal_the_twin_in_fp32(lnc, tokens, experts, hidden, dtype):
    """bf16 operands, fp32 accumulation: the logits of a bf16 model agree with the twin's fp32 ones to fp32
    rounding, and the weights are read as stored (bf16 bytes), once per working program."""
    gen = torch.Generator().manual_seed(tokens)
    x, weight = torch.randn(tokens, hidden, generator=gen).to(dtype), torch.randn(experts, hidden, generator=gen).to(dtype)
    runs = []
    got = router_op(EmulatorRunner(lnc=lnc, record=runs))(x, weight)
    assert got.dtype == torch.float32 and rel_err(got, fp32_router_logits(x, weight)) < 1e-6
    working = min(lnc, -(-tokens // 128))
    size = dtype.itemsize if hasattr(dtype, "itemsize") else torch.empty((), dtype=dtype).element_size()
    assert runs[-1][1].cost.hbm_bytes == (x.numel() + working * weight.numel()) * size + tokens * experts * 4
