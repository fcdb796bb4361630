"""The CPU runtime's state contract: batches, prefill/decode consistency, chunked prefill, row
isolation, EOS, sampling and bad input."""

from __future__ import annotations

import json

import pytest
import torch

from tiny_models import PROMPTS, make_engine
from qwen35_neuron.errors import InputError
from qwen35_neuron.runtime.sampling import SamplingParams
from qwen35_neuron.runtime.session import GenerationSession, generate, text_rotary_positions

NEW = 12


def _cte(engine, prompt, start, rows=(0,), bucket=16):
    ids = torch.zeros(1, bucket, dtype=torch.long)
    ids[0, : len(prompt)] = torch.tensor(prompt)
    cache_start = torch.tensor([start])
    rotary = text_rotary_positions(cache_start, bucket, torch.zeros(1, dtype=torch.long))
    return engine.forward(ids, rotary, cache_start, torch.tensor([len(prompt)]), torch.tensor(rows))


def test_batch_of_different_lengths_equals_each_alone(tiny_dir):
    engine = make_engine(tiny_dir)
    batch = generate(engine, [list(p) for p in PROMPTS], NEW, eos_token_ids=()).tokens
    for row, prompt in enumerate(PROMPTS):
        assert batch[row] == generate(engine, [list(prompt)], NEW, eos_token_ids=()).tokens[0]


def test_prefill_then_decode_equals_longer_prefill(tiny_dir):
    engine = make_engine(tiny_dir)
    prompt = PROMPTS[1]
    whole = _cte(engine, prompt, 0)
    engine.reset()
    _cte(engine, prompt[:-1], 0)
    start = torch.tensor([len(prompt) - 1])
    step = engine.forward(torch.tensor([[prompt[-1]]]), text_rotary_positions(start, 1, torch.zeros(1, dtype=torch.long)),
                          start, torch.tensor([1]), torch.tensor([0]))
    assert (whole - step).abs().max().item() < 1e-4


def test_chunked_prefill_equals_one_call(tiny_dir):
    engine = make_engine(tiny_dir)
    prompt = PROMPTS[1]
    whole = _cte(engine, prompt, 0)
    engine.reset()
    _cte(engine, prompt[:6], 0)
    second = _cte(engine, prompt[6:], 6)
    assert (whole - second).abs().max().item() < 1e-4


def test_restarting_a_row_leaves_other_rows_unchanged(tiny_dir):
    engine = make_engine(tiny_dir)
    alone = generate(engine, [list(PROMPTS[0])], NEW, eos_token_ids=()).tokens[0]
    replacement_alone = generate(engine, [list(PROMPTS[2])], 5, eos_token_ids=()).tokens[0]

    engine.reset()
    session = GenerationSession(engine)
    row0 = [session.prefill([list(PROMPTS[0]), list(PROMPTS[1])], rows=[0, 1])[0]]
    for _ in range(4):
        row0.append(session.decode()[0])
    row1 = [session.prefill([list(PROMPTS[2])], rows=[1])[0]]  # new request in row 1 only
    while len(row0) < NEW:
        tokens = session.decode()
        row0.append(tokens[0])
        if len(row1) < 5:
            row1.append(tokens[1])
    assert row0 == alone
    assert row1 == replacement_alone


def test_idle_rows_keep_their_state(tiny_dir):
    engine = make_engine(tiny_dir)
    session = GenerationSession(engine)
    session.prefill([list(PROMPTS[0]), list(PROMPTS[1])])
    before = [s.clone() for s in engine.states[0]]
    session.finish(1)
    session.decode()
    after = engine.states[0]
    changed_row0 = any(not torch.equal(b[0], a[0]) for b, a in zip(before, after))
    assert changed_row0
    assert all(torch.equal(b[1], a[1]) for b, a in zip(before, after))


def test_eos_from_generation_config_stops_and_is_excluded(tiny_dir):
    engine = make_engine(tiny_dir)
    free = generate(engine, [list(PROMPTS[0])], NEW, eos_token_ids=()).tokens[0]
    stop = free[3]
    stopped = generate(engine, [list(PROMPTS[0])], NEW, eos_token_ids=(stop,)).tokens[0]
    assert stopped == free[: free.index(stop)]
    with open(f"{tiny_dir}/generation_config.json") as handle:
        assert tuple(json.load(handle)["eos_token_id"]) == engine.text.eos_token_ids


def test_default_eos_ids_are_qwen35s():
    from qwen35_neuron.config import parse_model_config
    from qwen35_neuron.testing.tiny import tiny_config_dict

    raw = tiny_config_dict()
    del raw["text_config"]["eos_token_id"]
    assert parse_model_config(raw).text.eos_token_ids == (248046, 248044)


def test_seeded_sampling_is_reproducible_and_differs_from_greedy(tiny_dir):
    engine = make_engine(tiny_dir)
    params = SamplingParams(do_sample=True, temperature=1.5, top_k=50, top_p=0.9, seed=3)
    first = generate(engine, [list(PROMPTS[0])], NEW, params, eos_token_ids=()).tokens
    again = generate(engine, [list(PROMPTS[0])], NEW, params, eos_token_ids=()).tokens
    greedy = generate(engine, [list(PROMPTS[0])], NEW, eos_token_ids=()).tokens
    assert first == again
    assert first != greedy


def test_top_k_one_is_greedy(tiny_dir):
    engine = make_engine(tiny_dir)
    params = SamplingParams(do_sample=True, top_k=1, seed=7)
    assert generate(engine, [list(PROMPTS[0])], NEW, params, eos_token_ids=()).tokens == \
        generate(engine, [list(PROMPTS[0])], NEW, eos_token_ids=()).tokens


@pytest.mark.parametrize("prompt, message", [
    ([], "empty prompt"),
    ([1] * 65, "a prompt of 65 tokens and max_new_tokens 0 need 65 cache slots per row, but the cache holds 64"),
    ([1, 999], "outside the vocabulary"),
    ([1, -2], "outside the vocabulary"),
])
def test_bad_prompt_is_rejected_without_touching_state(tiny_dir, prompt, message):
    engine = make_engine(tiny_dir)
    session = GenerationSession(engine)
    session.prefill([list(PROMPTS[0])], rows=[0])
    before = [s.clone() for s in engine.states[0]]
    with pytest.raises(InputError, match=message):
        session.prefill([list(PROMPTS[1]), prompt], rows=[1, 2])
    assert all(torch.equal(b, a) for b, a in zip(before, engine.states[0]))


def test_capacity_and_batch_errors(tiny_dir):
    engine = make_engine(tiny_dir)
    with pytest.raises(InputError, match="max_seq_len"):
        generate(engine, [list(PROMPTS[0])], 100)
    with pytest.raises(InputError, match="batch_size"):
        generate(engine, [[1]] * 5, 2)
    with pytest.raises(InputError, match="temperature"):
        SamplingParams(do_sample=True, temperature=0)


def test_a_full_cache_finishes_the_row(tiny_dir):
    engine = make_engine(tiny_dir, max_seq_len=32)
    session = GenerationSession(engine)
    session.prefill([[1] * 30])
    assert session.decode()[0] is not None  # writes position 30
    assert session.decode()[0] is not None  # writes position 31: the cache is full now
    assert session.decode()[0] is None and not session.rows[0].active


def test_decode_at_the_fused_gate_boundary_equals_the_layer_path(tiny_dir):
    """ModelOps.gdr_decode_gated (gdn_tkg's op boundary, used by the fused kernels) with its twin gives
    the same tokens as the layer's own gates and norm, and idle rows still keep their state."""
    import dataclasses

    from qwen35_neuron.model.deltanet import gated_decode
    from qwen35_neuron.model.model_ops import TORCH_OPS

    plain = generate(make_engine(tiny_dir), [list(p) for p in PROMPTS], NEW, eos_token_ids=())
    engine = make_engine(tiny_dir)
    engine.models[0].ops = dataclasses.replace(TORCH_OPS, gdr_decode_gated=gated_decode)
    fused = generate(engine, [list(p) for p in PROMPTS], NEW, eos_token_ids=())
    assert fused.tokens == plain.tokens
    assert max((torch.stack(a) - torch.stack(b)).abs().max().item() for a, b in zip(fused.logits, plain.logits)) < 1e-5
    session = GenerationSession(engine)
    session.prefill([list(PROMPTS[0]), list(PROMPTS[1])])
    before = [s.clone() for s in engine.states[0]]
    session.finish(1)
    session.decode()
    assert all(torch.equal(b[1], a[1]) for b, a in zip(before, engine.states[0]))


def test_seeded_sampling_is_per_request(tiny_dir):
    """Each request samples from its own generator: a prompt's sampled tokens are the same alone or
    beside another prompt (design: row b's outputs depend only on row b)."""
    engine = make_engine(tiny_dir)
    params = SamplingParams(do_sample=True, temperature=1.5, top_k=50, top_p=0.95, seed=3)
    alone = generate(engine, [list(PROMPTS[0])], NEW, params, eos_token_ids=()).tokens[0]
    batched = generate(engine, [list(PROMPTS[1]), list(PROMPTS[0])], NEW, params, eos_token_ids=()).tokens
    assert batched[1] == alone


def test_a_row_without_tokens_keeps_its_state_even_at_position_zero(tiny_dir):
    """An idle row keeps its DeltaNet state whatever cache position a caller sends with it."""
    engine = make_engine(tiny_dir)
    session = GenerationSession(engine)
    session.prefill([list(PROMPTS[0]), list(PROMPTS[1])])
    before = [s.clone() for s in engine.states[0]]
    ids, start = torch.tensor([[5], [0]]), torch.tensor([5, 0])  # row 1: no token, position 0
    engine.forward(ids, text_rotary_positions(start, 1, torch.zeros(2, dtype=torch.long)), start,
                   torch.tensor([1, 0]), torch.tensor([0, 1]))
    assert all(torch.equal(b[1], a[1]) for b, a in zip(before, engine.states[0]))


def test_a_prompt_that_fills_a_bucket_takes_the_next_one_as_in_nxdi():
    """NxDI's ModelWrapper._get_seq_bucket (first fit) is strict except for the largest bucket; the real
    function is compared with ours for every length in tests/real_sdk."""
    from qwen35_neuron.decoding.buckets import choose_bucket

    buckets = (8, 16, 32)
    assert [choose_bucket(n, buckets) for n in (1, 7, 8, 15, 16, 31, 32)] == [8, 8, 16, 16, 32, 32, 32]
    with pytest.raises(InputError, match="longer than the largest context bucket"):
        choose_bucket(33, buckets)
