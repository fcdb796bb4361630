"""Trainium2 tests: compile + load, tokens equal to the CPU runtime, CTE -> TKG carry, mixed lengths.

Marked ``neuron``; they skip cleanly where torch-neuronx is not installed. Run on a trn2 host:

    python -m pytest tests/neuron/test_trn2.py -m neuron -v                         # tiny model
    python -m pytest tests/neuron/test_trn2.py -m neuron --qwen35-model /models/Qwen3.5-35B-A3B

The real-model test also runs the CPU reference in bf16 (about 70 GB of host memory).
"""

from __future__ import annotations

import pytest
import torch

from qwen35_neuron.config import RunConfig
from qwen35_neuron.config.neuron_settings import NeuronSettings, preset
from qwen35_neuron.runtime.loading import load_engine
from qwen35_neuron.runtime.session import generate
from qwen35_neuron.testing.tiny import build_tiny_checkpoint, tiny_config_dict
from tiny_models import PROMPTS

pytestmark = pytest.mark.neuron
pytest.importorskip("torch_neuronx", reason="needs a Trainium2 host with the Neuron SDK (torch-neuronx)")

TINY_SETTINGS = NeuronSettings(tp_degree=2, lnc=2, batch_size=4, context_buckets=(16, 32), max_length=64,
                               dtype="float32")  # our NKI kernels on, as in production


def cpu_tokens(model_dir, prompts, new_tokens, dtype="float32", eos=()):
    width = max(len(p) for p in prompts)
    run = RunConfig(batch_size=len(prompts), context_buckets=(width,), max_seq_len=width + new_tokens, dtype=dtype)
    return generate(load_engine(model_dir, run)[1], prompts, new_tokens, eos_token_ids=eos).tokens


def compile_and_load(model_dir, out_dir, settings):
    from qwen35_neuron.neuron import Qwen35MoeForCausalLM, inference_config

    Qwen35MoeForCausalLM(str(model_dir), inference_config(model_dir, settings)).compile(str(out_dir))
    model = Qwen35MoeForCausalLM(str(out_dir))  # reload the config from neuron_config.json
    model.load(str(out_dir))
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("tiny-ckpt")
    build_tiny_checkpoint(model_dir, tiny_config_dict(), seed=1)
    return model_dir, compile_and_load(model_dir, tmp_path_factory.mktemp("tiny-compiled"), TINY_SETTINGS)


def test_tiny_tokens_equal_cpu_on_three_prompts_of_different_lengths(tiny):
    from qwen35_neuron.neuron.generation import generate_direct

    model_dir, model = tiny
    prompts = [list(p) for p in PROMPTS]  # 5, 13 and 3 tokens in one batch
    ours = generate_direct(model, prompts, 12)
    assert ours.tokens == cpu_tokens(model_dir, prompts, 12)
    assert len(ours.step_s) == 11  # one CTE, then 11 TKG steps on the carried state


def test_tiny_new_request_resets_only_its_row(tiny):
    from qwen35_neuron.neuron.generation import generate_direct

    model_dir, model = tiny
    generate_direct(model, [[3, 1, 4, 1, 5, 9, 2, 6]] * 4, 6)  # leave state in every row
    prompts = [list(PROMPTS[2]), list(PROMPTS[0])]
    assert generate_direct(model, prompts, 8).tokens == cpu_tokens(model_dir, prompts, 8)


def test_tiny_adapter_agrees_with_the_direct_loop(tiny):
    from qwen35_neuron.neuron.generation import generate_direct, generate_with_adapter

    _, model = tiny
    prompts = [list(p) for p in PROMPTS]
    assert generate_with_adapter(model, prompts, 6) == generate_direct(model, prompts, 6).tokens


def test_real_model_tokens_equal_cpu(model_path, tmp_path_factory):
    from qwen35_neuron.config import load_model_config
    from qwen35_neuron.neuron.generation import generate_direct

    settings = preset("trn2.3xlarge", batch_size=4, context_buckets=(128,), max_length=256)
    model = compile_and_load(model_path, tmp_path_factory.mktemp("real-compiled"), settings)
    prompts = [[760, 6511, 314, 9338, 369], [9707, 11, 1246, 525, 498, 30, 358, 1079], [2]]
    eos = load_model_config(model_path).text.eos_token_ids
    ours = generate_direct(model, prompts, 8, eos).tokens
    # bf16 on both sides; rounding differs (kernels vs torch), so a late greedy tie may flip: compare 4
    reference = cpu_tokens(model_path, prompts, 8, dtype="bfloat16", eos=eos)
    assert [t[:4] for t in ours] == [t[:4] for t in reference]
    assert torch.tensor([len(t) for t in ours]).min() >= 1


@pytest.mark.parametrize("num_drafts", [1, 3])
def test_tiny_mtp_speculation_equals_plain_greedy(tmp_path_factory, num_drafts):
    """NxDI's speculation graph (K+1 slots) as our verify graph, with a head built to draft well: the tokens
    of plain greedy decoding, in fewer verify calls than tokens (rows accept different counts)."""
    import dataclasses

    from qwen35_neuron.neuron.speculation import generate_speculative_direct
    from qwen35_neuron.testing.drafting import build_drafting_checkpoint

    model_dir = build_drafting_checkpoint(tmp_path_factory.mktemp("mtp-ckpt"), tiny_config_dict(), seed=1, mix_scale=0.2)
    settings = dataclasses.replace(TINY_SETTINGS, num_speculative_tokens=num_drafts, token_buckets=(32, 64))
    model = compile_and_load(model_dir, tmp_path_factory.mktemp("mtp-compiled"), settings)
    prompts = [list(p) for p in PROMPTS]
    ours = generate_speculative_direct(model, prompts, 12, num_drafts)
    assert ours.tokens == cpu_tokens(model_dir, prompts, 12)
    assert len(ours.step_s) < 11 and ours.acceptance.tokens_per_step > 1
