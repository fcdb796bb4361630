"""MTP speculative decoding through the neuron layer's graphs on a CPU (SDK stand-ins): the CTE graph
that also drafts, the verify graph of K+1 slots that commits each row at its accepted length and
drafts again, and the host loop around them; tokens equal plain greedy decoding of the CPU runtime."""

from __future__ import annotations

import pytest
import torch

from nxdi_driver import TINY, NxdiDriver, build
from qwen35_neuron.config.neuron_settings import NeuronSettings
from qwen35_neuron.errors import InputError, UnsupportedConfigError
from qwen35_neuron.neuron_layout.layout import state_buffers
from qwen35_neuron.runtime.session import generate
from qwen35_neuron.testing.drafting import build_drafting_checkpoint
from qwen35_neuron.testing.tiny import tiny_config_dict
from tiny_models import PROMPTS, make_engine


@pytest.fixture(scope="module")
def drafting_dirs(tmp_path_factory) -> dict[str, str]:
    return {name: str(build_drafting_checkpoint(tmp_path_factory.mktemp(f"neuron-mtp-{name}"),
                                                tiny_config_dict(dense=name == "dense"), seed=1, mix_scale=0.2))
            for name in ("moe", "dense")}


@pytest.mark.parametrize("name, counts", [("moe", (1, 3)), ("dense", (2,))])
def test_speculative_graphs_equal_plain_greedy(fake_sdk_modules, drafting_dirs, name, counts):
    import qwen35_neuron.neuron as neuron
    from qwen35_neuron.neuron.speculation import generate_speculative_direct

    prompts = [list(p) for p in PROMPTS]
    reference = generate(make_engine(drafting_dirs[name]), prompts, 12, eos_token_ids=()).tokens
    for num_drafts in counts:
        config, module, aliases = build(neuron, drafting_dirs[name], num_speculative_tokens=num_drafts)
        layout = state_buffers(config.text(), 4, 64, torch.float32, 1, mtp=True)
        assert [aliases[p] for p in module.past_key_values] == list(range(1, 1 + len(layout)))  # MTP K/V aliased too
        driver = NxdiDriver(module, TINY["context_buckets"], TINY["max_length"])
        ours = generate_speculative_direct(driver, prompts, 12, num_drafts)
        assert ours.tokens == reference, num_drafts
        assert driver.calls[0] == "cte16" and set(driver.calls[1:]) == {"tkg"}  # then verify calls only
        assert all(a > 0 for a in ours.acceptance.accepted)
        assert len(driver.calls) - 1 == len(ours.step_s) < 11  # fewer verify calls than decode steps
    with pytest.raises(InputError, match=f"compiled with num_speculative_tokens={counts[-1]}"):
        generate_speculative_direct(driver, prompts, 4, 1 if counts[-1] != 1 else 2)


def test_speculation_settings_are_checked():
    with pytest.raises(UnsupportedConfigError, match="num_speculative_tokens must be in 0..3"):
        NeuronSettings(num_speculative_tokens=4)
    with pytest.raises(UnsupportedConfigError, match="equals the verify graph's length"):
        NeuronSettings(num_speculative_tokens=3, context_buckets=(4, 128), max_length=256)
    for sampling in ({"on_device_sampling": True}, {"on_device_sampling": True, "output_logits": True}):
        with pytest.raises(UnsupportedConfigError, match="greedy and returns tokens only"):
            NeuronSettings(num_speculative_tokens=1, **sampling)
    with pytest.raises(UnsupportedConfigError, match="no room for verify steps"):
        NeuronSettings(num_speculative_tokens=3, context_buckets=(2,), max_length=4, token_buckets=(4,))
    from qwen35_neuron.config.neuron_settings import neuron_config_kwargs

    assert neuron_config_kwargs(NeuronSettings(num_speculative_tokens=2))["speculation_length"] == 3
    assert neuron_config_kwargs(NeuronSettings())["speculation_length"] == 0
