"""Steps 2 and 3 of ``vllm serve DIR`` with the real vLLM 0.16.0 and vllm-neuron 0.5.0: the NxDI loader picks
our class and builds its config, and the module it returns serves vLLM-shaped steps with transformers'
tokens. One fresh rank process (the real-SDK tier's harness: shims for the closed binaries, NxDI's CPU
mode standing in for compile + load: see ``vllm_serving_job``)."""

from __future__ import annotations

import json

import pytest

from sdk_cases import MIXED, NEW_TOKENS, reference_key

PROMPTS = MIXED[:2]  # two sequences of different lengths, one prefill step, then decode steps
MAX_NUM_SEQS = 2
# --additional-config '{"override_neuron_config": {...}}': NxDI's CPU sampler, and our run settings (the
# PyTorch twins: NKI kernels cannot run on a CPU)
OVERRIDE = {"on_cpu": True, "qwen35": {"deltanet_kernel": "torch", "attention_kernel": "torch", "moe_kernel": "torch",
                                     "moe_block_size": 16}}


@pytest.fixture(scope="module")
def served(tier_data, tmp_path_factory) -> dict:
    from sdk_harness import run_ranks

    compiled = tmp_path_factory.mktemp("compiled") / "qwen35-tp1"
    [result] = run_ranks(1, "vllm_serving_job:vllm_serving_job", model_dir=str(tier_data / "default"),
                         prompts=PROMPTS, new_tokens=NEW_TOKENS, max_num_seqs=MAX_NUM_SEQS, override=OVERRIDE,
                         compiled_dir=str(compiled))
    return result


def test_the_real_loader_picks_our_class_and_builds_its_config(served):
    assert served["picked"] == "LazyModelClass('qwen35_neuron.neuron.model:Qwen35MoeForCausalLM')"
    assert served["picked_class"] == "qwen35_neuron.neuron.model.Qwen35MoeForCausalLM"
    assert served["dense_picked_class"] == "qwen35_neuron.neuron.model.Qwen35ForCausalLM"  # the dense family's key
    assert (served["loader_module"], served["application"]) == ("NeuronCausalLM", "Qwen35MoeForCausalLM")
    assert (served["config_class"], served["neuron_config_class"]) == ("Qwen35MoeInferenceConfig", "Qwen35MoeNeuronConfig")
    assert (served["num_key_value_heads"], served["head_dim"]) == (2, 32)  # the loader's top-level reads
    settings = served["settings"]
    assert (settings.deltanet_kernel, settings.attention_kernel, settings.moe_block_size) == ("torch", "torch", 16)
    assert (settings.batch_size, settings.max_length, settings.dtype) == (MAX_NUM_SEQS, 64, "float32")
    assert served["sampling"]["dynamic"] is True  # each request's top_k / top_p / temperature reach the sampler
    hashed = json.loads(served["hash_input"])  # what the loader hashes into the artifacts path: plain JSON
    assert "text_config" not in hashed and hashed["neuron_config"]["qwen35"] == OVERRIDE["qwen35"]
    print("vllm-neuron picked", served["picked_class"], "with", served["config_class"], served["settings"])


def test_vllm_shaped_steps_give_transformers_greedy_tokens(served, reference):
    expected = [reference[reference_key(p)] for p in PROMPTS]
    print("tokens (vLLM loader, NxDI CPU mode):", served["tokens"], "transformers:", expected)
    assert served["tokens"] == expected


def test_each_requests_sampling_parameters_reach_the_sampler(served, reference, tier_data):
    """Beside a greedy request, one asking top_k 3 at temperature 1 gets tokens that are not all greedy,
    each among the 3 likeliest after its own prefix (our CPU runtime's logits, equal to transformers' in the
    main suite); the greedy request's tokens are unchanged by its neighbour."""
    from qwen35_neuron.config import RunConfig
    from qwen35_neuron.runtime.loading import load_engine
    from qwen35_neuron.runtime.session import generate
    from vllm_serving_job import SAMPLED_REQUEST

    greedy_row, sampled_row = served["sampled_tokens"]
    assert greedy_row == reference[reference_key(PROMPTS[0])]
    assert sampled_row != reference[reference_key(PROMPTS[1])]
    engine = load_engine(str(tier_data / "default"), RunConfig(batch_size=1, context_buckets=(64,), max_seq_len=64))[1]
    for step, token in enumerate(sampled_row):
        logits = generate(engine, [list(PROMPTS[1]) + sampled_row[:step]], 1, eos_token_ids=()).logits[0][0]
        assert token in logits.topk(SAMPLED_REQUEST["top_k"]).indices.tolist(), (step, token)
    print("greedy row", greedy_row, "| top_k 3, temperature 1 row", sampled_row)


def test_where_the_chain_stops_on_a_cpu(served):
    """Compiling needs the closed Neuron compiler stack; a restart with NEURON_COMPILED_ARTIFACTS rebuilds our
    application from the saved neuron_config.json (vLLM's new overrides unused) and then needs the compiled
    graphs (model.pt) - the loader reads their absence as 'recompile'."""
    stops = served["stops"]
    print("where the chain stops:", stops["compile"], "|", stops["restart"])
    assert "torch_neuronx" in stops["compile"]
    assert stops["restart"].startswith("ValueError") and "model.pt" in stops["restart"]
    config_class, settings = stops["restart_config"]
    assert config_class == "Qwen35MoeInferenceConfig" and settings == served["settings"]


def test_modes_our_state_cannot_serve_are_refused_with_the_fix(served):
    refused = served["refused"]
    assert "--no-enable-prefix-caching" in refused["prefix_caching"]
    assert "block KV layout" in refused["block_kv_layout"]
