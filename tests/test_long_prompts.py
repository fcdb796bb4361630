"""Prompts past the largest context bucket: a chunked prefill (consecutive CTE calls, each continuing
from the carried conv, recurrent and KV state) equals one long prefill and transformers, on every CPU
backend; the chunk size never changes the tokens; rows that are done wait untouched; the cache is the
only limit."""

from __future__ import annotations

import pytest
import torch

from tiny_models import make_engine
from qwen35_neuron.cli.main import main
from qwen35_neuron.decoding.buckets import Chunk, plan_chunks, prefill_rounds
from qwen35_neuron.errors import InputError
from qwen35_neuron.runtime.session import GenerationSession, generate
from qwen35_neuron.testing.reference import hf_greedy

NEW = 8
BUCKETS = (4, 8)  # largest bucket 8: LONG needs 6 CTE calls
LONG = torch.randint(0, 240, (42,), generator=torch.Generator().manual_seed(5)).tolist()  # ~5x the largest
SHORT = [240, 4, 66]
RUN = dict(context_buckets=BUCKETS, max_seq_len=64)


def record_calls(engine) -> list[tuple[int, list[int] | None]]:
    """Wrap ``engine.forward`` to log each call's (slots per row, rows)."""
    calls: list[tuple[int, list[int] | None]] = []
    forward = engine.forward

    def logged(input_ids, rotary, cache_start, valid_len, seq_ids, **kwargs):
        calls.append((input_ids.shape[1], None if seq_ids is None else seq_ids.tolist()))
        return forward(input_ids, rotary, cache_start, valid_len, seq_ids, **kwargs)

    engine.forward = logged
    return calls


def assert_same(ours, reference, tol: float = 1e-4) -> None:
    """Same tokens, and the logits that chose them within ``tol``."""
    assert ours.tokens == reference.tokens
    for a, b in zip(ours.logits, reference.logits):
        assert (torch.stack(a) - torch.stack(b)).abs().max().item() < tol


def test_schedule_is_largest_bucket_first_then_the_smallest_that_fits():
    assert plan_chunks(42, BUCKETS) == tuple(Chunk(s, 8, 8) for s in range(0, 40, 8)) + (Chunk(40, 2, 4),)
    assert plan_chunks(40, BUCKETS) == tuple(Chunk(s, 8, 8) for s in range(0, 40, 8))
    assert plan_chunks(3, BUCKETS) == (Chunk(0, 3, 4),)
    rounds = prefill_rounds([42, 3, 13], BUCKETS)
    assert [[i for i, _ in members] for members in rounds] == [[0, 1, 2], [0, 2]] + [[0]] * 4
    assert rounds[1][1] == (2, Chunk(8, 5, 8))


@pytest.mark.parametrize("backend, checkpoint, extra, new", [
    ("dense", "default", {}, NEW),
    ("simulated-tp", "default", {"tp_degree": 2}, NEW),
    ("nki-sim", "head_dim_256", {}, 3),  # the emulated kernels take seconds per call
])
def test_prompt_five_times_the_largest_bucket_matches_transformers(checkpoint_dirs, hf_models, backend, checkpoint,
                                                                   extra, new):
    engine = make_engine(checkpoint_dirs[checkpoint], backend=backend, **RUN, **extra)
    calls = record_calls(engine)
    ours = generate(engine, [LONG], new, eos_token_ids=())
    assert calls[:6] == [(8, [0])] * 5 + [(4, [0])]  # five full chunks, the tail in the small bucket
    tokens, logits = hf_greedy(hf_models(checkpoint, "causal"), LONG, new)
    assert ours.tokens[0] == tokens
    assert (torch.stack(ours.logits[0]) - logits).abs().max().item() < 2e-4


@pytest.mark.parametrize("buckets", [(8,), (5, 7), (3,), (16, 32), (2, 13)])
def test_chunk_size_does_not_change_the_logits(tiny_dir, buckets):
    one_call = generate(make_engine(tiny_dir, context_buckets=(64,), max_seq_len=64), [LONG, SHORT], NEW,
                        eos_token_ids=())
    engine = make_engine(tiny_dir, context_buckets=buckets, max_seq_len=64)
    calls = record_calls(engine)
    chunked = generate(engine, [LONG, SHORT], NEW, eos_token_ids=())
    assert len(prefill_rounds([len(LONG)], buckets)) > 1
    assert len(calls) == len(prefill_rounds([len(LONG)], buckets)) + NEW - 1
    assert_same(chunked, one_call)


def test_mixed_batch_of_a_long_and_a_short_prompt(tiny_dir, hf_models):
    engine = make_engine(tiny_dir, **RUN)
    calls = record_calls(engine)
    batch = generate(engine, [SHORT, LONG], NEW, eos_token_ids=())
    prefill_calls = calls[:6]
    assert prefill_calls == [(8, [0, 1])] + [(8, [1])] * 4 + [(4, [1])]  # the short row waits after round 0
    for row, prompt in enumerate([SHORT, LONG]):
        tokens, logits = hf_greedy(hf_models("default", "causal"), prompt, NEW)
        assert batch.tokens[row] == tokens
        assert (torch.stack(batch.logits[row]) - logits).abs().max().item() < 2e-4


def test_rows_done_or_running_wait_untouched(tiny_dir):
    """The short row's state after round 0 survives the long row's later chunks bit for bit, and a
    request decoding in another row goes on exactly as alone."""
    engine = make_engine(tiny_dir, **RUN)
    session = GenerationSession(engine)
    state_after = {}
    forward = engine.forward

    def watch(input_ids, rotary, cache_start, valid_len, seq_ids, **kwargs):
        out = forward(input_ids, rotary, cache_start, valid_len, seq_ids, **kwargs)
        state_after[len(state_after)] = [s[1].clone() for s in engine.states[0]]
        return out

    engine.forward = watch
    session.prefill([LONG, SHORT], rows=[0, 1], max_new_tokens=NEW)
    assert len(state_after) == 6
    assert all(torch.equal(a, b) for a, b in zip(state_after[0], state_after[5]))
    engine.forward = forward

    alone = generate(make_engine(tiny_dir, **RUN), [SHORT], 2 * NEW, eos_token_ids=()).tokens[0]
    engine.reset()
    session = GenerationSession(engine)
    tokens = [session.prefill([SHORT], rows=[2], max_new_tokens=2 * NEW)[0]]
    tokens += [session.decode()[2] for _ in range(3)]
    session.prefill([LONG], rows=[0], max_new_tokens=NEW)  # six CTE calls while row 2 is mid-request
    while len(tokens) < 2 * NEW:
        tokens.append(session.decode()[2])
    assert tokens == alone


def test_prompt_plus_new_tokens_beyond_the_cache_is_one_clear_error(tiny_dir):
    engine = make_engine(tiny_dir, **RUN)
    session = GenerationSession(engine)
    session.prefill([SHORT], rows=[1])
    before = [s.clone() for s in engine.states[0]]
    assert len(generate(engine, [LONG[:40]], 24, eos_token_ids=()).tokens[0]) == 24  # 40 + 24 = 64: fits
    engine.states = [[s.clone() for s in before]]
    with pytest.raises(InputError) as err:
        session.prefill([LONG[:41]], rows=[0], max_new_tokens=24)
    assert str(err.value) == ("a prompt of 41 tokens and max_new_tokens 24 need 65 cache slots per row, but the cache "
                              "holds 64: raise --max-seq-len (RunConfig.max_seq_len) to at least 65 or generate "
                              "fewer tokens")
    assert all(torch.equal(a, b) for a, b in zip(before, engine.states[0]))


def test_cli_long_prompt_and_limit(capsys, tiny_dir):
    ids = ",".join(str(t) for t in LONG)
    base = ["generate", "--model", tiny_dir, "--input-ids", ids, "--buckets", "4,8", "--max-new-tokens", str(NEW)]
    assert main(base + ["--max-seq-len", "64", "--json"]) == 0
    out = capsys.readouterr().out
    expected = generate(make_engine(tiny_dir, **RUN), [LONG], NEW).tokens
    assert f'"tokens": {expected}'.replace(" ", "") in out.replace(" ", "")
    assert main(base + ["--max-seq-len", "48"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: a prompt of 42 tokens and max_new_tokens 8 need 50 cache slots per row, but the cache "
                   "holds 48: raise --max-seq-len (RunConfig.max_seq_len) to at least 50 or generate fewer tokens\n")
