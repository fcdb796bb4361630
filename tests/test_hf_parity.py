"""Our model against transformers' Qwen3.5-MoE (and the dense Qwen3.5 family) on tiny checkpoints: greedy tokens identical and
the logits that chose them close, for several shapes and both HF entry classes."""

from __future__ import annotations

import pytest
import torch

from tiny_models import PROMPTS, TINY_CONFIGS, make_engine
from qwen35_neuron.runtime.session import generate
from qwen35_neuron.testing.reference import hf_greedy

NEW_TOKENS = 16
LOGIT_ATOL = 2e-4


def _compare(engine, hf_model, prompts):
    ours = generate(engine, [list(p) for p in prompts], NEW_TOKENS, eos_token_ids=())
    for row, prompt in enumerate(prompts):
        tokens, logits = hf_greedy(hf_model, list(prompt), NEW_TOKENS)
        assert len(tokens) == NEW_TOKENS
        assert ours.tokens[row] == tokens, f"row {row}: ours {ours.tokens[row]} vs transformers {tokens}"
        diff = (torch.stack(ours.logits[row]) - logits).abs().max().item()
        assert diff < LOGIT_ATOL, f"row {row}: max logit diff {diff}"
        # the comparison can fail: greedy gaps are far larger than the noise
        top2 = logits.topk(2, dim=-1).values
        assert (top2[:, 0] - top2[:, 1]).min().item() > 10 * diff


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_tokens_and_logits_match_causal_lm(name, checkpoint_dirs, hf_models):
    _compare(make_engine(checkpoint_dirs[name]), hf_models(name, "causal"), PROMPTS)


@pytest.mark.parametrize("name", ["default", "head_dim_256", "dense", "dense_tied"])
def test_tokens_match_conditional_generation_text_only(name, checkpoint_dirs, hf_models):
    _compare(make_engine(checkpoint_dirs[name]), hf_models(name, "conditional"), PROMPTS[:2])


@pytest.mark.parametrize("block", [128, 4])  # 128: all-experts prefill form; 4: dropless blockwise form
def test_static_moe_matches_transformers(tiny_dir, hf_models, block):
    _compare(make_engine(tiny_dir, moe_impl="static", moe_block_size=block), hf_models("default", "causal"),
             PROMPTS[:2])


def test_full_prompt_logits_match(tiny_dir, hf_models):
    """Every position of a CTE bucket, not only the last: all-logits mode against HF's forward."""
    engine = make_engine(tiny_dir)
    prompt = PROMPTS[1]
    ids = torch.zeros(1, 16, dtype=torch.long)
    ids[0, : len(prompt)] = torch.tensor(prompt)
    positions = torch.arange(16)[None, None].expand(3, 1, 16)
    logits = engine.forward(ids, positions, torch.tensor([0]), torch.tensor([len(prompt)]), torch.tensor([0]),
                            all_logits=True)[0, : len(prompt)]
    with torch.no_grad():
        reference = hf_models("default", "causal")(torch.tensor([prompt])).logits[0]
    assert (logits - reference).abs().max().item() < LOGIT_ATOL
