"""Prompts past the largest context bucket inside the real NxDI / NxD (CPU mode, TP 1 and 2): NxDI
refuses a context encoding wider than its largest bucket and runs the context-encoding graph only when
a row starts at position 0; our application splits it into chunks that NxDI routes, pads and copies
back itself. A prompt ~5x the largest bucket gives transformers' greedy tokens, beside a short prompt,
through our direct loop and NxDI's HF adapter, and its logits equal one unchunked call's. In this process
(one rank): an image split across chunks (against the CPU VL path) and tail lengths of one token and of
none (against the CPU runtime)."""

from __future__ import annotations

import pytest
import torch

from qwen35_neuron.config import RunConfig
from qwen35_neuron.runtime.loading import load_engine
from qwen35_neuron.runtime.session import generate
from qwen35_neuron.runtime.vl_session import load_vl_session
from qwen35_neuron.vl import VLRequest, generate_vl
from sdk_cases import CONFIGS, LONG, LONG_BUCKETS, MIXED, reference_key
from test_nxdi_text import probe
from vl_cases import END, IMAGE, START, VISION_BUCKETS

TPS = (1, 2)
CASES = [pytest.param(config, tp, id=f"{config}-tp{tp}") for config in CONFIGS for tp in TPS]


@pytest.fixture(scope="session")
def long_runs(tier_data):
    from sdk_harness import run_ranks

    cache: dict = {}

    def get(config: str, tp: int) -> list[dict]:
        if (config, tp) not in cache:
            cache[(config, tp)] = run_ranks(tp, "sdk_long_probes:long_job", model_dir=str(tier_data / config), tp=tp)
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


MAX_LENGTH = 64
NEW = 6
SETTINGS = dict(context_buckets=LONG_BUCKETS, max_length=MAX_LENGTH, ctx_batch_size=1)


def cpu_run(**changes) -> RunConfig:
    return RunConfig(**{**dict(batch_size=4, context_buckets=LONG_BUCKETS, max_seq_len=MAX_LENGTH, gdr_chunk_size=8),
                        **changes})


def graph_calls(app) -> list[tuple[int, int, int]]:
    """(rows, slots, first cache position) of every call of the eager graphs behind NxDI's wrappers."""
    calls: list[tuple[int, int, int]] = []
    for graph in (app.context_encoding_model.model, app.token_generation_model.model):
        graph.register_forward_pre_hook(lambda _, args: calls.append(
            (int(args[0].shape[0]), int(args[0].shape[1]), int(args[2][0, 0]))))
    return calls


def test_long_prompt_with_an_image_split_across_chunks_equals_the_cpu_vl_path(application, neuron_vl_dir,
                                                                             neuron_vl_images):
    from qwen35_neuron.neuron.vl_session import load_neuron_vl_session

    text = [11, 42, 7, 99, 3, 17, 64, 128, 31, 9]
    requests = [VLRequest(text + [START, IMAGE, END] + text + [START, IMAGE, END] + text[:5],
                          [neuron_vl_images["wide"], neuron_vl_images["tall"]]),
                VLRequest([5, 200, 17], [])]
    app = application(neuron_vl_dir, **SETTINGS)
    session = load_neuron_vl_session(app, vision_buckets=VISION_BUCKETS)
    prompt = session.prepare(requests).prompts[0]
    assert len(prompt) >= 5 * max(LONG_BUCKETS)
    assert any(prompt[s - 1] == prompt[s] == IMAGE for s in range(8, len(prompt), 8))  # a boundary inside an image
    calls = graph_calls(app)
    ours = generate_vl(session, requests, NEW)
    reference = generate_vl(load_vl_session(neuron_vl_dir, cpu_run(vision_buckets=VISION_BUCKETS))[1], requests, NEW)
    assert ours.tokens == reference.tokens
    for ours_row, ref_row in zip(ours.logits, reference.logits):
        assert (torch.stack(ours_row) - torch.stack(ref_row)).abs().max().item() < 1e-4
    assert [c[2] for c in calls if c[1] > 1 and c[2] > 0] == list(range(8, len(prompt), 8))


@pytest.mark.parametrize("length", [33, 40])  # a one-token tail (sent two slots wide), an exact multiple
def test_tail_lengths(application, tiny_dir, length):
    from qwen35_neuron.neuron.generation import generate_direct

    app = application(tiny_dir, **SETTINGS)
    calls = graph_calls(app)
    prompt = LONG[:length]
    ours = generate_direct(app, [prompt], NEW)
    assert ours.tokens == generate(load_engine(tiny_dir, cpu_run())[1], [prompt], NEW, eos_token_ids=()).tokens
    chunks = [c for c in calls if c[1] > 1]
    assert len(chunks) == -(-length // 8) and chunks[-1][2] == 8 * (len(chunks) - 1)


def test_long_prompt_on_a_model_with_a_verify_graph(nxdi, checkpoint_dirs):
    """Compiled for MTP speculation with K = 2, NxDI routes a call K + 1 = 3 slots wide that does not start
    at position 0 to its speculation (verify) wrapper: no chunk of a long prompt may go out 3 wide. The
    3-token tail goes to the context-encoding wrapper 4 wide (NxDI runs it in bucket 8: a filled bucket
    takes the next), and the speculative loop's tokens after the chunked prefill are plain greedy's (our
    CPU runtime)."""
    from qwen35_neuron.neuron.speculation import generate_speculative_direct
    from sdk_speculation import build_speculative_application

    model_dir = checkpoint_dirs["mtp_drafting"]
    app = build_speculative_application(model_dir, 2, 1, **SETTINGS)
    calls: list[tuple[str, int, int]] = []  # (wrapper, slots sent, first cache position)
    for tag, wrapper in (("cte", app.context_encoding_model), ("verify", app.speculation_model)):
        wrapper.register_forward_pre_hook(lambda _, args, tag=tag: calls.append(
            (tag, int(args[0].shape[1]), int(args[2][0, 0]))))
    graph_buckets = []
    app.context_encoding_model.model.register_forward_pre_hook(
        lambda _, args: graph_buckets.append(int(args[0].shape[1])))
    prompt = LONG[:35]  # four chunks of 8, then a 3-token tail
    ours = generate_speculative_direct(app, [prompt], NEW, 2)
    assert ours.tokens == generate(load_engine(model_dir, cpu_run())[1], [prompt], NEW, eos_token_ids=()).tokens
    assert calls[:5] == [("cte", 8, 0), ("cte", 8, 8), ("cte", 8, 16), ("cte", 8, 24), ("cte", 4, 32)]
    assert graph_buckets == [8] * 5
    assert calls[5:] and all(tag == "verify" and slots == 3 for tag, slots, _ in calls[5:])


def test_nkilib_prefill_refuses_to_continue_a_row(application, tiny_dir, monkeypatch):
    """nki-library's gdn_cte starts every prefill from a zero state: with deltanet_kernel 'nkilib' a prompt
    past the largest bucket (chunks) or a context encoding past position 0 is an InputError raised before
    any graph runs (every row's state bit-identical); a prompt the bucket holds still runs (here NKI is
    absent, so the layer falls back to the PyTorch twins) and equals the CPU runtime."""
    from qwen35_neuron.errors import InputError
    from qwen35_neuron.neuron import device_ops
    from qwen35_neuron.neuron.generation import generate_direct

    monkeypatch.setattr(device_ops, "_real_nki", lambda: False)  # the shimmed nki cannot run kernels

    app = application(tiny_dir, deltanet_kernel="nkilib", context_buckets=(128,), max_length=256, ctx_batch_size=1)
    states = app.context_encoding_model.model.kv_mgr.past_key_values
    before = [s.detach().clone() for s in states]
    long_prompt = (LONG * 4)[:130]
    with pytest.raises(InputError, match=r"deltanet_kernel 'nkilib'.*130 tokens.*context_buckets \(128\)"):
        generate_direct(app, [long_prompt], NEW)
    ids = torch.tensor([LONG[:6]])
    with pytest.raises(InputError, match=r"row\(s\) \[0\] continue a prefill past position 0"):
        app(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=torch.arange(10, 16)[None],
            seq_ids=torch.tensor([0]))
    assert all(torch.equal(a, b) for a, b in zip(states, before))
    cpu = load_engine(tiny_dir, cpu_run(context_buckets=(128,), max_seq_len=256))[1]
    assert generate_direct(app, [LONG[:20]], NEW).tokens == generate(cpu, [LONG[:20]], NEW, eos_token_ids=()).tokens
