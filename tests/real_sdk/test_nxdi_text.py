"""Qwen35MoeForCausalLM inside the real NxDI / NxD, in NxDI's CPU mode, as real TP processes.

Every check goes through NxDI's own code: ``to_cpu()`` (HF -> Neuron conversion, NxD sharding for the
rank, the real ModelWrapper's padding and casting), NxDI's application forward and CPU copy-back, the
HF adapter with NxDI's host sampler. The reference is transformers 5's ``Qwen3_5MoeForCausalLM`` on the
same weights (``write_reference.py``). fp32 throughout (gloo has no bf16).
"""

from __future__ import annotations

import pytest
import torch

from sdk_cases import BUCKETS, CONFIGS, FILLS, MIXED, TOKEN_BUCKETS, VARIANTS, reference_key

TPS = (1, 2)
CASES = [pytest.param(config, tp, id=f"{config}-tp{tp}") for config in CONFIGS for tp in TPS]


def probe(results: list[dict], name: str, run: str = "main"):
    """Rank 0's value of a probe; a probe that raised fails the test with its traceback."""
    outcome = results[0][run][name]
    if "error" in outcome:
        pytest.fail(f"probe {name} ({run}) raised inside NxDI:\n{outcome['error']}", pytrace=False)
    return outcome["value"]


@pytest.mark.parametrize("config, tp", CASES)
def test_converted_checkpoint_names_exactly_the_model_weights(text_runs, config, tp):
    """to_cpu() loads with strict=False, so a weight the conversion misses would stay random silently."""
    results = text_runs(config, tp)
    for run in ("main", *VARIANTS):
        loaded = probe(results, "loaded_weights", run)
        for graph in ("cte", "tkg"):
            assert loaded[graph]["missing"] == [] and loaded[graph]["unexpected"] == [], (run, graph, loaded)
            assert loaded[graph]["count"] > 20


@pytest.mark.parametrize("config, tp", CASES)
def test_each_prompt_alone_equals_transformers(text_runs, reference, config, tp):
    """Batch 1 (NxDI pads it to the compiled 4 rows), through the HF adapter and our direct loop."""
    alone = probe(text_runs(config, tp), "tokens_alone")
    for loop in ("adapter", "direct"):
        assert alone[loop] == reference[config], loop


@pytest.mark.parametrize("config, tp", CASES)
def test_mixed_length_batch_equals_transformers(text_runs, reference, config, tp):
    results = text_runs(config, tp)
    expected = [reference[config][reference_key(p)] for p in MIXED]
    for run in ("main", *VARIANTS):
        mixed = probe(results, "tokens_mixed", run)
        assert mixed["direct"] == expected, run
        assert mixed["adapter"] == expected, run


@pytest.mark.parametrize("config, tp", CASES)
def test_context_batch_splits_or_pads_as_nxdi_does(text_runs, config, tp):
    """Whole batch: one padded context encoding; ctx_batch_size 1: one call per prompt, each at its own
    bucket (NxDI re-buckets every slice). Then one token-generation call per step over all rows."""
    results = text_runs(config, tp)
    steps = [("tkg", 4, 1)] * 7
    assert probe(results, "tokens_mixed")["direct_calls"] == [("cte", 4, 16)] + steps
    per_request = [("cte", 1, 8), ("cte", 1, 16), ("cte", 1, 8)]
    assert probe(results, "tokens_mixed", "ctx1")["direct_calls"] == per_request + steps


@pytest.mark.parametrize("config", CONFIGS)
def test_tp2_equals_tp1(text_runs, config):
    one, two = text_runs(config, 1), text_runs(config, 2)
    for name in ("tokens_alone", "tokens_mixed"):
        assert probe(two, name) == probe(one, name), name
    assert [rank["main"]["tokens_mixed"] for rank in two[1:]] == [two[0]["main"]["tokens_mixed"]]
    logits_one, logits_two = probe(one, "first_logits"), probe(two, "first_logits")
    assert logits_two.shape == logits_one.shape == (len(MIXED), 256)
    assert torch.allclose(logits_two, logits_one, rtol=1e-4, atol=1e-4), (logits_two - logits_one).abs().max()


@pytest.mark.parametrize("config, tp", CASES)
def test_fewer_prompts_than_rows_leave_other_rows_bit_identical(text_runs, reference, config, tp):
    """NxDI pads a partial batch by repeating its first row into the missing seq ids and runs them all;
    the rows nobody asked for must keep every state buffer bit for bit (direct loop, then HF adapter)."""
    idle = probe(text_runs(config, tp), "idle_rows")
    assert idle["direct"] == reference[config][reference_key(MIXED[0])]
    assert idle["adapter"] == reference[config][reference_key(MIXED[2])]
    assert idle["padded_calls"]["cte"] == 2 and idle["padded_calls"]["tkg"] >= 2 * 7  # NxDI's padding ran
    for after in idle["others_unchanged"]:
        assert all(after), list(zip(idle["kinds"], after))
    assert all(idle["row0_changed"])  # the row that was asked for did move
    assert idle["cte_equals_tkg"]


@pytest.mark.parametrize("config, tp", CASES)
def test_bucket_rule_is_nxdis_and_a_filled_bucket_runs_in_the_next(text_runs, reference, config, tp):
    buckets = probe(text_runs(config, tp), "buckets")
    assert buckets["wrapper_buckets"] == list(BUCKETS)
    assert buckets["ours"] == buckets["nxdi"]  # decoding/buckets.py == ModelWrapper._get_seq_bucket, lengths 1..32
    fills = buckets["fills"]
    assert fills[8]["cte_lengths"] == [16]  # exactly fills bucket 8: NxDI takes 16
    assert fills[32]["cte_lengths"] == [32]  # the largest bucket takes its own length
    for length, prompt in FILLS.items():
        assert fills[length]["tokens"] == reference[config][reference_key(prompt)], length


@pytest.mark.parametrize("config, tp", CASES)
def test_context_state_reaches_token_generation_through_nxdi_copy_back(text_runs, config, tp):
    """The CTE and TKG graphs are separate modules in CPU mode: NxDI's application copies the states the
    CTE graph returned into both (``kv_mgr.past_key_values``), and the next TKG step reads them."""
    carry = probe(text_runs(config, tp), "state_carry")
    assert carry["held"] == {"cte": True, "tkg": True}
    assert carry["rows_written"] and all(carry["rows_written"])
    assert carry["step_calls"] == [("tkg", 4, 1)] and carry["tkg_changed"]


@pytest.mark.parametrize("config, tp", CASES)
def test_every_bucket_instance_aliases_each_state_buffer_once(text_runs, checkpoint_dirs, config, tp):
    """``get_model_instance().load_module()`` then ``get(bucket)``, as NxDI prepares tracing: the alias map
    covers every state buffer (KV, conv, recurrent) exactly once, at the outputs after the logits, with
    this rank's shapes."""
    from qwen35_neuron.config import load_model_config
    from qwen35_neuron.neuron_layout.layout import state_buffers

    instances = probe(text_runs(config, tp), "instances")
    layout = state_buffers(load_model_config(checkpoint_dirs[config]).text, 4, 64, torch.float32, tp)
    layers = 4
    attention, deltanet = 1, layers - 1
    assert [b["n_positions"] for b in instances["cte"]] == list(BUCKETS)
    assert [b["n_positions"] for b in instances["tkg"]] == [64]
    for bucket in instances["cte"] + instances["tkg"]:
        count = len(bucket["kinds"])
        assert count == 2 * layers
        assert bucket["keys_are_buffers"]
        assert bucket["outputs"] == list(range(1, 1 + count))
        assert [bucket["kinds"].count(k) for k in ("k_cache", "v_cache", "conv_state", "recurrent_state")] == \
            [attention, attention, deltanet, deltanet]
        recurrent = [d for k, d in zip(bucket["kinds"], bucket["dtypes"]) if k == "recurrent_state"]
        assert recurrent == ["torch.float32"] * deltanet
        assert bucket["shapes"] == [b.shape for b in layout] and bucket["kinds"] == [b.kind for b in layout]



@pytest.mark.parametrize("config, tp", CASES)
def test_token_generation_buckets_read_their_slots_and_keep_the_tokens(text_runs, reference, config, tp):
    """Token-generation buckets 16 / 32 / 64: NxDI's wrapper picks the first bucket wider than the mask and
    pads the mask to it; our graph then attends to that many cache slots only. Same tokens as
    transformers (the mixed batch reaches 13 + 7 slots: buckets 16 and then 32)."""
    results = text_runs(config, tp)
    widths = probe(results, "tkg_mask_widths", "token_buckets")
    assert set(widths["widths"]) == {16, 32} and widths["widths"] == sorted(widths["widths"])
    assert set(widths["widths"]) <= set(TOKEN_BUCKETS)
    assert widths["tokens"] == [reference[config][reference_key(p)] for p in MIXED]


@pytest.mark.parametrize("config, tp", CASES)
def test_a_full_batch_in_any_row_order_lands_in_its_rows(text_runs, reference, config, tp):
    """NxDI runs a call covering every row as given (no sorting, no padding); the graph updates the state
    buffers row by row, so our wrapper sorts the rows first and gives the outputs back in the caller's
    order: every prompt continues in the row it was sent to."""
    tokens = probe(text_runs(config, tp), "full_batch_any_order")
    assert tokens == {key: reference[config][key] for key in tokens}

def test_tp4_equals_transformers_and_tp1(text_runs, reference):
    """Four rank processes on this two-core machine (the default config, the text probes without the
    settings variants): the same tokens, padding, carry and aliasing as at TP 1."""
    four, one = text_runs("default", 4, variants=False), text_runs("default", 1)
    assert probe(four, "tokens_alone") == probe(one, "tokens_alone")
    assert probe(four, "tokens_alone")["direct"] == reference["default"]
    assert probe(four, "tokens_mixed") == probe(one, "tokens_mixed")
    assert [rank["main"]["tokens_mixed"] for rank in four[1:]] == [four[0]["main"]["tokens_mixed"]] * 3
    assert torch.allclose(probe(four, "first_logits"), probe(one, "first_logits"), rtol=1e-4, atol=1e-4)
    idle = probe(four, "idle_rows")
    assert all(all(after) for after in idle["others_unchanged"]) and all(idle["row0_changed"])
    assert probe(four, "state_carry")["held"] == {"cte": True, "tkg": True}
    for bucket in probe(four, "instances")["cte"] + probe(four, "instances")["tkg"]:
        assert bucket["keys_are_buffers"] and bucket["outputs"] == list(range(1, 9))
