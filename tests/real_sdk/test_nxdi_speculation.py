"""MTP speculative decoding inside the real NxDI / NxD, in NxDI's CPU mode, TP 1 and 2, fp32.

``NeuronSettings(num_speculative_tokens=K)`` gives NxDI a ``speculation_length`` of K+1: NxDI itself builds
the context-encoding wrapper and its speculation wrapper (our verify graph), buckets the latter by the
token-generation buckets, routes each call, pads it and copies the states back. Our host loop
``generate_speculative_direct`` drives it (see ``sdk_speculation`` for what is NxDI's and what is ours, and
the one check of ``to_cpu()`` lifted). The reference is transformers 5's plain greedy decoding of the same
checkpoints: tiny MoE and dense models with an MTP head, two built to draft well
(``qwen35_neuron.testing.drafting``), one random.
"""

from __future__ import annotations

import json

import pytest

from sdk_cases import BATCH, MAX_LENGTH
from sdk_speculation_cases import FULL_PROBES, MATRIX, REFERENCE_FILE, RUNS, TOKEN_BUCKETS
from test_nxdi_text import probe

TPS = (1, 2)
LAYERS, ATTENTION_LAYERS = 4, 1  # the tiny configs: 3 DeltaNet layers, 1 attention layer
STATE_BUFFERS = 2 * LAYERS + 2  # conv + recurrent or K + V per layer, then the MTP head's K and V


@pytest.fixture(scope="session")
def speculation_reference(tier_data) -> dict:
    """checkpoint -> run -> transformers 5 greedy tokens per prompt."""
    return json.loads((tier_data / REFERENCE_FILE).read_text())


@pytest.fixture(scope="session")
def speculation_runs(tier_data):
    from sdk_harness import run_ranks

    cache: dict = {}

    def get(tp: int) -> list[dict]:
        if tp not in cache:
            cache[tp] = run_ranks(tp, "sdk_speculation:speculation_job", data_dir=str(tier_data), tp=tp)
        return cache[tp]

    return get


def nxdi_bucket(sent: int, num_drafts: int) -> int:
    """NxDI's choice for its speculation graph (``ModelWrapper._get_seq_bucket``): the first bucket wider
    than the mask plus the K+1 slots, the largest only when exactly as wide."""
    required = sent + num_drafts + 1
    fits = [b for b in TOKEN_BUCKETS if required < b] + ([TOKEN_BUCKETS[-1]] if required == TOKEN_BUCKETS[-1] else [])
    assert fits, f"NxDI refuses a mask of {sent} columns with {num_drafts + 1} slots"
    return fits[0]


@pytest.mark.parametrize("tp", TPS)
def test_speculative_tokens_equal_plain_greedy(speculation_runs, speculation_reference, tp):
    """Every checkpoint, K and run: transformers' greedy tokens; one context encoding, then only calls of
    NxDI's speculation wrapper, K+1 slots over the compiled rows (NxDI pads the batch); every rank agrees."""
    results = speculation_runs(tp)
    for (name, k), run_names in MATRIX.items():
        runs = probe(results, "runs", f"{name}-k{k}")
        for run in run_names:
            out = runs[run]
            assert out["tokens"] == speculation_reference[name][run], (name, k, run)
            assert out["cte_calls"] == 1 and out["calls"], (name, k, run)
            assert {(c["rows"], c["slots"]) for c in out["calls"]} == {(BATCH, k + 1)}, (name, k, run)
        for rank in results[1:]:
            assert rank[f"{name}-k{k}"]["runs"]["value"] == runs, (name, k)


@pytest.mark.parametrize("tp", TPS)
def test_rows_accept_different_counts(speculation_runs, tp):
    """With the drafting heads rows commit 1 to K+1 slots, differently in one call; the random head's drafts
    are (almost) all rejected - the tokens above are equal either way."""
    results = speculation_runs(tp)
    for (name, k), _ in MATRIX.items():
        out = probe(results, "runs", f"{name}-k{k}")["mixed"]
        commits = [[c for c, on in zip(call["commit"], call["active"]) if on] for call in out["calls"]]
        assert all(1 <= c <= k + 1 for row in commits for c in row), (name, k, commits)
        assert all(not on for call in out["calls"] for on in call["active"][len(RUNS["mixed"][0]):])  # filler row
        if name == "mtp_random":
            assert out["acceptance"]["tokens_per_step"] < 1.2, out["acceptance"]
            continue
        assert any(len(set(row)) > 1 for row in commits), (name, k, commits)  # rows differ within a call
        assert {1, k + 1} <= {c for row in commits for c in row}, (name, k, commits)
        assert all(rate > 0 for rate in out["acceptance"]["acceptance_by_depth"]), out["acceptance"]


@pytest.mark.parametrize("tp", TPS)
def test_verify_state_equals_plain_decoding_of_the_committed_tokens(speculation_runs, speculation_reference, tp):
    """After every verify call, each row's DeltaNet conv and recurrent state and its attention K/V over its
    committed slots equal those of NxDI's token-generation graph (an application without speculation)
    decoding exactly the committed tokens one by one: rejected drafts leave no trace. Rows commit different
    counts in the same call; the row nobody uses stays zero."""
    results = speculation_runs(tp)
    for k in (1, 3):
        states = probe(results, "states", f"{FULL_PROBES}-k{k}")
        assert states["tokens"] == speculation_reference[FULL_PROBES]["mixed"]
        assert len(states["steps"]) >= 2
        assert any(len(set(c for c in step["commit"] if c)) > 1 for step in states["steps"]), states["steps"]
        for step in states["steps"]:
            assert step["seq_ids"] == list(range(BATCH)) and step["unused_rows_zero"], step
            kinds = [c["kind"] for c in step["compared"]]
            assert kinds.count("recurrent_state") == LAYERS - ATTENTION_LAYERS and kinds.count("k_cache") == ATTENTION_LAYERS
            assert all(c["close"] for c in step["compared"]), step


@pytest.mark.parametrize("tp", TPS)
def test_verify_graph_runs_at_nxdis_token_buckets(speculation_runs, tp):
    """NxDI buckets its speculation graph by the token-generation buckets (16, 32, 64), choosing by the
    mask the host sends (the cache before the K+1 slots) plus K+1. A short prompt's verify calls climb
    through all three; near the end of the cache the host's mask stops at 64 - (K+1) columns, the widest
    NxDI takes, and the row still fills the cache to its last slot."""
    results = speculation_runs(tp)
    clipped = 0
    for (name, k), run_names in MATRIX.items():
        runs = probe(results, "runs", f"{name}-k{k}")
        for run in run_names:
            out = runs[run]
            assert len(out["sent"]) == len(out["calls"])
            for sent, call in zip(out["sent"], out["calls"]):
                assert call["bucket"] == nxdi_bucket(sent, k), (name, k, run, sent, call)
                assert sent <= MAX_LENGTH - (k + 1)
                clipped += any(on and start + k + 1 > MAX_LENGTH for start, on in zip(call["start"], call["active"]))
            if run == "climb":
                buckets = [c["bucket"] for c in out["calls"]]
                assert buckets == sorted(buckets) and set(buckets) == set(TOKEN_BUCKETS), (k, buckets)
            if run == "cache_end":
                prompt, new_tokens = RUNS[run][0][0], RUNS[run][1]
                assert len(prompt) + new_tokens == MAX_LENGTH and len(out["tokens"][0]) == new_tokens
    assert clipped, "no verify call ran within K+1 slots of the cache end"


@pytest.mark.parametrize("tp", TPS)
def test_verify_graph_reads_only_its_bucket(speculation_runs, tp):
    """A verify call at bucket 16, again with every main-model K/V slot from 16 on NaN: the same tokens,
    commit and drafts, finite states (a whole-cache read carries the NaN through)."""
    results = speculation_runs(tp)
    for k in (1, 3):
        out = probe(results, "reads_its_bucket", f"{FULL_PROBES}-k{k}")
        assert out["buckets"] == [TOKEN_BUCKETS[0]] * 2
        assert out["poisoned"] == out["clean"] and out["clean"]["finite"]
        assert len(out["clean"]["packed"][0]) == 2 * k + 2  # K+1 greedy tokens, the commit, K drafts


@pytest.mark.parametrize("tp", TPS)
def test_every_bucket_instance_aliases_each_state_buffer_once(speculation_runs, tp):
    """NxDI builds a context-encoding and a speculation wrapper (no token-generation one). Each bucket's
    model instance, as NxDI prepares it for tracing (``get_model_instance().load_module()``, ``get``), aliases
    every state buffer - the MTP head's K/V last - to one output after output 0, and runs on NxDI's own
    example inputs of that bucket: int32 output 0 ([first token, K drafts] / [K+1 tokens, commit, K drafts])
    and state outputs shaped as the buffers they alias."""
    results = speculation_runs(tp)
    for k in (1, 3):
        out = probe(results, "instances", f"{FULL_PROBES}-k{k}")
        assert out["tags"] == ["context_encoding_model", "speculation_model"]
        assert not out["has_token_generation_model"]
        assert [b["bucket"] for b in out["speculation_model"]] == list(TOKEN_BUCKETS)
        for tag, width in (("context_encoding_model", k + 1), ("speculation_model", 2 * k + 2)):
            for bucket in out[tag]:
                assert bucket["aliases_to"] == list(range(1, 1 + STATE_BUFFERS)) and bucket["keys_are_buffers"], bucket
                assert bucket["names"][-2:] == ["mtp.layers.0.k_cache", "mtp.layers.0.v_cache"]
                assert bucket["output0"] == ((BATCH, width), "torch.int32") and bucket["states_match"], bucket
        for bucket in out["speculation_model"]:
            assert bucket["example_shapes"][:2] == [(BATCH, k + 1), (BATCH, bucket["bucket"])]


def test_other_draft_counts_than_compiled_are_an_input_error(nxdi, checkpoint_dirs):
    """In this process (TP 1): the host loop refuses K drafts on a model compiled for another K, before
    any graph runs."""
    from qwen35_neuron.errors import InputError
    from qwen35_neuron.neuron.speculation import generate_speculative_direct
    from sdk_speculation import build_speculative_application

    app = build_speculative_application(checkpoint_dirs[FULL_PROBES], 3, 1)
    calls = []
    app.context_encoding_model.model.register_forward_pre_hook(lambda *_: calls.append(1))
    for asked in (1, 2):
        with pytest.raises(InputError, match="compiled with num_speculative_tokens=3, not "
                                             f"{asked}: recompile or ask for 3 drafts"):
            generate_speculative_direct(app, [RUNS["mixed"][0][0]], 4, asked)
    assert calls == []
