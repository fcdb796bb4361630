"""The MoE block's formulations agree: eager per-expert groups, gathered decode, dropless blockwise
prefill and all-experts prefill; the static ones export."""

from __future__ import annotations

import pytest
import torch

from qwen35_neuron.model.moe import Experts


def _experts(impl: str, block: int = 4, num: int = 8, hidden: int = 16, inter: int = 8) -> Experts:
    gen = torch.Generator().manual_seed(0)
    experts = Experts(num, hidden, inter, impl, block)
    with torch.no_grad():
        experts.gate_up_proj.copy_(torch.randn(num, 2 * inter, hidden, generator=gen) * 0.3)
        experts.down_proj.copy_(torch.randn(num, hidden, inter, generator=gen) * 0.3)
    return experts


def _routing(tokens: int, num: int = 8, top_k: int = 2, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, 16, generator=gen)
    weights, ids = torch.randn(tokens, num, generator=gen).softmax(-1).topk(top_k, dim=-1)
    return x, weights / weights.sum(-1, keepdim=True), ids


@pytest.mark.parametrize("tokens, block", [(1, 4), (3, 4), (16, 4), (40, 8), (9, 1)])
def test_static_forms_equal_eager(tokens, block):
    x, weights, ids = _routing(tokens)
    eager = _experts("eager")
    static = _experts("static", block)
    reference = eager._eager(x, weights, ids)
    assert (static(x, weights, ids) - reference).abs().max() < 1e-5
    assert (static._blockwise(x, weights, ids) - reference).abs().max() < 1e-5
    assert (static._all_experts(x, weights, ids) - reference).abs().max() < 1e-5


def test_blockwise_is_chosen_when_it_is_smaller_and_all_experts_otherwise(monkeypatch):
    x, weights, ids = _routing(16)
    calls = []
    static = _experts("static", block=4)
    monkeypatch.setattr(static, "_blockwise", lambda *a: calls.append("blockwise") or torch.zeros_like(x))
    monkeypatch.setattr(static, "_all_experts", lambda *a: calls.append("all") or torch.zeros_like(x))
    static(x, weights, ids)  # 32 pairs: 16 blocks x 4 = 64 slots < 16 x 8 = 128
    static.block_size = 128
    static(x, weights, ids)  # 9 blocks x 128 slots > 128
    assert calls == ["blockwise", "all"]


def test_one_expert_taking_every_token_fits_the_static_bound():
    x = torch.randn(10, 16)
    ids = torch.stack([torch.zeros(10, dtype=torch.long), torch.arange(10) % 7 + 1], dim=1)
    weights = torch.full((10, 2), 0.5)
    assert (_experts("static", 4)._blockwise(x, weights, ids) - _experts("eager")._eager(x, weights, ids)).abs().max() < 1e-5


def test_blockwise_exports():
    x, weights, ids = _routing(16)
    static = _experts("static", 4).eval()
    program = torch.export.export(static, (x, weights, ids), strict=False)
    assert (program.module()(x, weights, ids) - static(x, weights, ids)).abs().max() < 1e-6
