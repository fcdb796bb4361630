"""Prompts past the largest context bucket through the NxDI application (SDK stand-ins): the
application cuts the context encoding into chunks of the largest bucket, each a CTE graph call at a
cache position > 0, and the tokens equal the CPU runtime's one long prefill; text and images (a chunk
boundary inside an image), a long row beside a short one."""

from __future__ import annotations

import pytest
import torch

from nxdi_driver import build_application
from qwen35_neuron.config import RunConfig
from qwen35_neuron.runtime.loading import load_engine
from qwen35_neuron.runtime.session import generate
from qwen35_neuron.runtime.vl_session import load_vl_session
from qwen35_neuron.vl import VLRequest, generate_vl
from vl_cases import END, IMAGE, START, VISION_BUCKETS

BUCKETS = (4, 8)
MAX_LENGTH = 64
LONG = torch.randint(0, 240, (42,), generator=torch.Generator().manual_seed(5)).tolist()  # ~5x the largest bucket
SHORT = [240, 4, 66]
NEW = 6
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


def test_long_prompt_beside_a_short_one_equals_the_cpu_runtime(fake_sdk_modules, tiny_dir):
    import qwen35_neuron.neuron as neuron
    from qwen35_neuron.neuron.generation import generate_direct

    app, module = build_application(neuron, tiny_dir, **SETTINGS)
    calls = graph_calls(module)
    ours = generate_direct(app, [LONG, SHORT], NEW)
    reference = generate(load_engine(tiny_dir, cpu_run())[1], [LONG, SHORT], NEW, eos_token_ids=())
    assert ours.tokens == reference.tokens
    # five full chunks of row 0 and the tail, each alone (ctx_batch_size 1); row 1 only in the first round
    cte = [c for c in calls if c[1] > 1]
    assert cte == [(1, 8, 0), (1, 4, 0)] + [(1, 8, s) for s in (8, 16, 24, 32)] + [(1, 4, 40)]


def test_long_prompt_with_an_image_split_across_chunks_equals_the_cpu_vl_path(fake_sdk_modules, neuron_vl_dir,
                                                                             neuron_vl_images):
    import qwen35_neuron.neuron as neuron
    from qwen35_neuron.neuron.vl_session import load_neuron_vl_session

    text = [11, 42, 7, 99, 3, 17, 64, 128, 31, 9]
    requests = [VLRequest(text + [START, IMAGE, END] + text + [START, IMAGE, END] + text[:5],
                          [neuron_vl_images["wide"], neuron_vl_images["tall"]]),
                VLRequest([5, 200, 17], [])]
    app, module = build_application(neuron, neuron_vl_dir, **SETTINGS)
    session = load_neuron_vl_session(app, vision_buckets=VISION_BUCKETS)
    prompt = session.prepare(requests).prompts[0]
    assert len(prompt) >= 5 * max(BUCKETS)
    assert any(prompt[s - 1] == prompt[s] == IMAGE for s in range(8, len(prompt), 8))  # a boundary inside an image
    calls = graph_calls(module)
    ours = generate_vl(session, requests, NEW)
    reference = generate_vl(load_vl_session(neuron_vl_dir, cpu_run(vision_buckets=VISION_BUCKETS))[1], requests, NEW)
    assert ours.tokens == reference.tokens
    for ours_row, ref_row in zip(ours.logits, reference.logits):
        assert (torch.stack(ours_row) - torch.stack(ref_row)).abs().max().item() < 1e-4
    assert [c[2] for c in calls if c[1] > 1 and c[2] > 0] == list(range(8, len(prompt), 8))


@pytest.mark.parametrize("length", [33, 40])  # a one-token tail (sent two slots wide), an exact multiple
def test_tail_lengths(fake_sdk_modules, tiny_dir, length):
    import qwen35_neuron.neuron as neuron
    from qwen35_neuron.neuron.generation import generate_direct

    app, module = build_application(neuron, tiny_dir, **SETTINGS)
    calls = graph_calls(module)
    prompt = LONG[:length]
    ours = generate_direct(app, [prompt], NEW)
    assert ours.tokens == generate(load_engine(tiny_dir, cpu_run())[1], [prompt], NEW, eos_token_ids=()).tokens
    chunks = [c for c in calls if c[1] > 1]
    assert len(chunks) == -(-length // 8) and chunks[-1][2] == 8 * (len(chunks) - 1)


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
