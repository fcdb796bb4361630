"""A prompt past the largest context bucket on a model compiled for MTP speculation, through the NxDI
application on the SDK stand-ins: NxDI's CPU mode refuses speculation (``to_cpu``), so this one stays
here; the other long-prompt checks run inside the real NxDI (tests/real_sdk/test_nxdi_long_prompts.py)."""

from __future__ import annotations

import torch

from nxdi_driver import build_application
from qwen35_neuron.config import RunConfig
from qwen35_neuron.runtime.loading import load_engine
from qwen35_neuron.runtime.session import generate

BUCKETS = (4, 8)
MAX_LENGTH = 64
LONG = torch.randint(0, 240, (42,), generator=torch.Generator().manual_seed(5)).tolist()  # ~5x the largest bucket
SETTINGS = dict(context_buckets=BUCKETS, max_length=MAX_LENGTH, ctx_batch_size=1)


def cpu_run(**changes) -> RunConfig:
    return RunConfig(**{**dict(batch_size=4, context_buckets=BUCKETS, max_seq_len=MAX_LENGTH, gdr_chunk_size=8),
                        **changes})


def graph_calls(module) -> list[tuple[int, int, int]]:
    """(rows, slots, first cache position) of every graph call (forward pre-hook on the traced module)."""
    calls: list[tuple[int, int, int]] = []
    module.register_forward_pre_hook(lambda _, args: calls.append(
        (int(args[0].shape[0]), int(args[0].shape[1]), int(args[2][0, 0]))))
    return calls


def test_long_prompt_on_a_model_with_a_verify_graph(fake_sdk_modules, tmp_path):
    """Compiled with MTP speculation (a verify graph of K + 1 = 3 slots): no chunk goes out 3 slots wide
    (NxDI would route it to the verify graph), and the chunked prefill's first token is plain greedy's."""
    import qwen35_neuron.neuron as neuron
    from qwen35_neuron.neuron.generation import right_padded
    from qwen35_neuron.testing.drafting import build_drafting_checkpoint
    from qwen35_neuron.testing.tiny import tiny_config_dict

    model_dir = str(build_drafting_checkpoint(tmp_path, tiny_config_dict(), seed=1, mix_scale=0.2))
    app, module = build_application(neuron, model_dir, num_speculative_tokens=2, **SETTINGS)
    calls = graph_calls(module)
    prompt = LONG[:35]  # a three-token tail
    input_ids, mask, positions = right_padded([prompt])
    out = app(input_ids=input_ids, attention_mask=mask, position_ids=positions, seq_ids=torch.tensor([0]))
    packed = out.tokens if out.tokens is not None else out.logits  # [first token, K drafts]
    first = generate(load_engine(model_dir, cpu_run())[1], [prompt], 1, eos_token_ids=()).tokens[0]
    assert int(packed.reshape(1, -1)[0, 0]) == first[0]
    assert [c[1:] for c in calls] == [(8, 0), (8, 8), (8, 16), (8, 24), (4, 32)]  # the tail sent 4 wide, not 3
