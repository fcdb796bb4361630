"""Prompts past the largest context bucket inside the real NxDI / NxD (CPU mode, TP 1 and 2): NxDI
refuses a context encoding wider than its largest bucket and runs the context-encoding graph only when
a row starts at position 0; our application splits it into chunks that NxDI routes, pads and copies
back itself. A prompt ~5x the largest bucket gives transformers' greedy tokens, beside a short prompt,
through our direct loop and NxDI's HF adapter, and its logits equal one unchunked call's."""

from __future__ import annotations

import pytest
import torch

from sdk_cases import CONFIGS, LONG, MIXED, reference_key
from test_nxdi_text import probe

TPS = (1, 2)
CASES = [pytest.param(config, tp, id=f"{config}-tp{tp}") for config in CONFIGS for tp in TPS]


@pytest.fixture(scope="session")
def long_runs(tier_data):
    from sdk_harness import run_ranks

    cache: dict = {}

    def get(config: str, tp: int) -> list[dict]:
        if (config, tp) not in cache:
            cache[(config, tp)] = run_ranks(tp, "long", model_dir=str(tier_data / config), tp=tp)
        return cache[(config, tp)]

    return get


@pytest.mark.parametrize("config, tp", CASES)
def test_prompt_five_times_the_largest_bucket_equals_transformers(long_runs, reference, config, tp):
    results = long_runs(config, tp)
    expected_long, expected_short = reference[config][reference_key(LONG)], reference[config][reference_key(MIXED[2])]
    for run in ("batch", "ctx1"):
        out = probe(results, "long_prompts", run)
        assert out["direct"] == [expected_long, expected_short], run
        assert out["adapter"] == expected_long, run


@pytest.mark.parametrize("config, tp", CASES)
def test_chunks_are_context_encodings_of_nxdis_buckets(long_runs, config, tp):
    """Five full chunks of the largest bucket (8) and the 2-token tail in the smallest (4); the short
    prompt takes part in the first round only. Whole batch: NxDI pads each call to the compiled 4 rows;
    one request per call: the short prompt's chunk runs alone in its own bucket."""
    results = long_runs(config, tp)
    assert probe(results, "long_prompts", "batch")["cte_calls"] == [(4, 8)] * 5 + [(4, 4)]
    assert probe(results, "long_prompts", "ctx1")["cte_calls"] == [(1, 8), (1, 4)] + [(1, 8)] * 4 + [(1, 4)]


@pytest.mark.parametrize("config, tp", CASES)
def test_chunked_logits_equal_one_call(long_runs, config, tp):
    results = long_runs(config, tp)
    one_call = probe(results, "last_logits", "one_call")
    for run in ("batch", "ctx1"):
        chunked = probe(results, "last_logits", run)
        assert chunked.shape == one_call.shape == (1, 256)
        assert torch.allclose(chunked, one_call, rtol=1e-4, atol=1e-4), (run, (chunked - one_call).abs().max())
