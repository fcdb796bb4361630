"""Images through the NxDI text graphs, inside the real NxDI in its CPU mode (this process, one rank).

The application, NxDI's wrapper (padding, partial batches, re-bucketing) with our subclass, and NxDI's
CPU copy-back run as they are; behind the wrappers are the eager graphs ``to_cpu()`` built. The CPU VL
path (``qwen35_neuron.vl``, whose tokens equal transformers' in tests/vl) is the reference. What this
cannot show: compilation, device numerics (tests/neuron/test_trn2_vl.py does, on a trn2 host).
"""

from __future__ import annotations

import pytest
import torch

from qwen35_neuron.config.neuron_settings import NeuronSettings
from qwen35_neuron.errors import InputError
from qwen35_neuron.runtime.vl_session import load_vl_session
from qwen35_neuron.vl import VLRequest, generate_vl
from sdk_cases import settings_kwargs
from sdk_harness import CallLog, graphs
from tiny_models import PROMPTS
from vl_cases import CASES, MIXED, NEW_TOKENS, VISION_BUCKETS, cpu_run_config, request

TINY = settings_kwargs(1)

LOGIT_TOL = 1e-4  # fp32 both sides; the static-shape MoE sums in another order than the CPU's eager one


@pytest.fixture
def neuron_vl(application, neuron_vl_dir):
    """make(**settings) -> (NeuronVLSession on the application NxDI's to_cpu() loaded, its graph calls)."""
    from qwen35_neuron.neuron.vl_session import load_neuron_vl_session

    def make(**changes):
        app = application(neuron_vl_dir, **changes)
        return load_neuron_vl_session(app, vision_buckets=VISION_BUCKETS), CallLog(app)

    return make


@pytest.fixture(scope="module")
def cpu_vl(neuron_vl_dir):
    """The CPU VL session with the compiled model's rows, buckets and cache length."""
    return load_vl_session(neuron_vl_dir, cpu_run_config(NeuronSettings(**TINY)))[1]


def assert_same_generation(ours, reference):
    assert ours.tokens == reference.tokens
    for ours_row, ref_row in zip(ours.logits, reference.logits):
        steps = min(len(ours_row), len(ref_row))
        assert steps >= 1
        diff = (torch.stack(ours_row[:steps]) - torch.stack(ref_row[:steps])).abs().max().item()
        print(f"max |logit diff| {diff:.1e}")
        assert diff < LOGIT_TOL, diff


@pytest.mark.parametrize("case", list(CASES))
def test_alone_equals_the_cpu_vl_path(neuron_vl, cpu_vl, neuron_vl_images, case):
    session, log = neuron_vl()
    requests = [request(case, neuron_vl_images)]
    ours = generate_vl(session, requests, NEW_TOKENS)
    assert len(ours.tokens[0]) >= 6
    assert_same_generation(ours, generate_vl(cpu_vl, requests, NEW_TOKENS))
    calls = (log.count("cte"), log.count("tkg"))
    made = len(ours.tokens[0])
    assert calls == (1, made - 1 if made == NEW_TOKENS else made)  # one CTE, then TKG until max tokens or EOS


@pytest.mark.parametrize("ctx_batch_size", [None, 1])
def test_mixed_batch_equals_the_cpu_vl_path(neuron_vl, cpu_vl, neuron_vl_images, ctx_batch_size):
    """Rows with and without images in one CTE call (ctx 4: NxDI pads 3 rows to 4), or one row per CTE
    graph call (ctx 1: NxDI re-buckets each row, the VL inputs are cut to fit)."""
    session, log = neuron_vl(ctx_batch_size=ctx_batch_size)
    requests = [request(c, neuron_vl_images) for c in MIXED]
    ours = generate_vl(session, requests, NEW_TOKENS)
    assert_same_generation(ours, generate_vl(cpu_vl, requests, NEW_TOKENS))
    assert [r.rope_delta for r in session.rows[:3]] == [3 - 6, 0, (3 - 6) + (2 - 4)]
    assert log.count("cte") == (3 if ctx_batch_size == 1 else 1)


def test_rows_chosen_by_the_caller(neuron_vl, cpu_vl, neuron_vl_images):
    session, _ = neuron_vl()
    requests = [request("two_images", neuron_vl_images), request("one_image", neuron_vl_images)]
    first = session.prefill(requests, rows=[3, 1], max_new_tokens=4)
    cpu_vl.reset()
    assert first == cpu_vl.prefill(requests, rows=[3, 1], max_new_tokens=4)
    for _ in range(3):
        assert session.decode() == cpu_vl.decode()


def test_a_full_batch_lands_in_its_rows_in_any_order(neuron_vl, cpu_vl, neuron_vl_images):
    """A call covering every state row, in another order: the graph updates the buffers row by row in
    input order, so the wrapper sorts the rows first and gives the outputs back in the caller's order."""
    session, _ = neuron_vl()
    requests = [request(c, neuron_vl_images) for c in (*MIXED, "no_image")]
    rows = [2, 0, 3, 1]
    first = session.prefill(requests, rows=rows, max_new_tokens=4)
    cpu_vl.reset()
    assert first == cpu_vl.prefill(requests, rows=rows, max_new_tokens=4)
    for _ in range(3):
        assert session.decode() == cpu_vl.decode()


def test_the_image_content_reaches_the_graph(neuron_vl, neuron_vl_images):
    session, _ = neuron_vl()
    prompt = CASES["one_image"][0]
    a = generate_vl(session, [VLRequest(prompt, [neuron_vl_images["wide"]])], 1, eos_token_ids=()).logits[0][0]
    b = generate_vl(session, [VLRequest(prompt, [neuron_vl_images["wide2"]])], 1, eos_token_ids=()).logits[0][0]
    assert (a - b).abs().max() > 0.1


def test_text_request_after_image_request_in_the_same_row(neuron_vl, neuron_vl_images):
    session, _ = neuron_vl()
    session.prefill([request("one_image", neuron_vl_images)], rows=[0], max_new_tokens=NEW_TOKENS)
    for _ in range(3):
        session.decode()
    assert session.rows[0].rope_delta == -3 and session.rows[0].length == 14
    first = session.prefill([request("no_image", neuron_vl_images)], rows=[0], max_new_tokens=NEW_TOKENS)
    assert session.rows[0].rope_delta == 0 and session.rows[0].length == 5
    tokens = first + [session.decode()[0] for _ in range(NEW_TOKENS - 1)]
    alone, _ = neuron_vl()
    assert tokens == generate_vl(alone, [request("no_image", neuron_vl_images)], NEW_TOKENS, eos_token_ids=()).tokens[0]


def _run_graph(module, args):
    """One graph call from a copy of the current state: (outputs incl. new states)."""
    saved = [p.data.clone() for p in module.past_key_values]
    with torch.no_grad():
        outputs = module(*args)
    for param, old in zip(module.past_key_values, saved):
        param.data = old
    return outputs


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_text_outputs_of_the_graphs_are_unchanged_by_the_vl_inputs(application, tiny_dir, dtype):
    """Bit for bit, logits and every state buffer: the graphs without VL inputs, with the text values the
    wrapper fills in, and with text values built by cte_inputs / tkg_inputs (the eager graphs behind
    NxDI's wrappers, called directly with the inputs the wrapper hands them)."""
    from qwen35_neuron.neuron.generation import decode_mask, right_padded
    from qwen35_neuron.neuron.vl_inputs import cte_inputs, text_inputs, tkg_inputs

    app = application(tiny_dir, dtype=dtype)
    ids, mask, positions = right_padded([[9, 8, 7, 6, 5, 4, 3, 2, 1]] * 4)
    app(input_ids=ids, attention_mask=mask, position_ids=positions, seq_ids=torch.arange(4))  # state in every row
    cte_graph, tkg_graph = graphs(app)
    hidden, torch_dtype = app.config.hidden_size, getattr(torch, dtype)
    ids, mask, positions = right_padded([list(p) for p in PROMPTS] + [[3, 1, 4]])
    ids, mask, positions = (torch.nn.functional.pad(t, (0, 16 - t.shape[1]), value=v) for t, v in
                            ((ids, 0), (mask, 0), (positions, 1)))
    standard = [ids, mask, positions, torch.arange(4, dtype=torch.int32), torch.ones(4, 3),
                torch.zeros(4, dtype=torch.int32), torch.zeros(4, dtype=torch.int32)]
    rotary = positions[:, :1] + torch.arange(16)
    explicit = cte_inputs(torch.zeros(4, 16, hidden), torch.zeros(4, 16), rotary[None].expand(3, -1, -1))
    variants = [(), text_inputs(True, positions, hidden, torch_dtype), explicit]
    old, *new = [_run_graph(cte_graph, standard + list(v)) for v in variants]
    for outputs in new:
        assert len(outputs) == len(old) and all(torch.equal(a, b) for a, b in zip(old, outputs))
    lengths = [5, 13, 3, 3]
    step = [torch.tensor([[7], [8], [9], [0]], dtype=torch.int32), decode_mask(lengths, [True, True, True, False]),
            torch.tensor([[n] for n in lengths], dtype=torch.int32)] + standard[3:]
    step[1] = torch.nn.functional.pad(step[1], (0, TINY["max_length"] - step[1].shape[1]))
    old, *new = [_run_graph(tkg_graph, step + list(v)) for v in ((), text_inputs(False, step[2], hidden, torch_dtype),
                                                                tkg_inputs([0, 0, 0, 0]))]
    for outputs in new:
        assert all(torch.equal(a, b) for a, b in zip(old, outputs))


def test_wrapper_traces_and_fills_the_vl_inputs(application, tiny_dir):
    """NxDI's own example inputs per bucket (what ModelBuilder traces) get the VL inputs after them; NxDI's
    bucket padding then fits them."""
    app = application(tiny_dir)
    cte, tkg = app.context_encoding_model, app.token_generation_model
    shapes = [[tuple(t.shape) for t in example[7:]] for example in cte.input_generator()]
    assert shapes == [[(4, b, 64), (4, b), (4, 3, b)] for b in TINY["context_buckets"]]
    assert [[tuple(t.shape) for t in example[7:]] for example in tkg.input_generator()] == [[(4,)]]
    ids = torch.tensor([[5, 6, 7]])
    padded = cte.pad_inputs(ids, torch.ones(1, 3), torch.tensor([[0, 1, 2]]), torch.tensor([0]), torch.ones(1, 3),
                            torch.zeros(1), torch.zeros(1))
    assert len(padded) == 10 and padded[9].tolist() == [[list(range(8))] * 3] and not padded[8].any()
    with pytest.raises(InputError, match="takes llava_args"):
        app(input_ids=ids, attention_mask=torch.ones(1, 3), position_ids=torch.tensor([[0, 1, 2]]),
            seq_ids=torch.tensor([0]), llava_args=[torch.zeros(1)])


def test_session_rejects_bad_requests_before_any_call(neuron_vl, neuron_vl_images):
    session, log = neuron_vl()
    with pytest.raises(InputError, match="placeholders"):
        session.prefill([VLRequest(CASES["one_image"][0], [])])
    with pytest.raises(InputError, match="distinct rows"):
        session.prefill([request("no_image", neuron_vl_images)] * 2, rows=[1, 1])
    assert log.calls == []


@pytest.mark.parametrize("ctx_batch_size", [None, 1])
def test_a_new_request_beside_a_running_one(neuron_vl, neuron_vl_images, ctx_batch_size):
    """Row 1 starts while row 0 runs. With a 4-row context graph NxDI pads the one-row call by replaying
    it into the other rows (row 0 among them); their all-zero mask keeps row 0's state, so row 0 goes on
    exactly as alone - as it does with one-row context graphs."""
    session, log = neuron_vl(ctx_batch_size=ctx_batch_size)
    tokens = session.prefill([request("one_image", neuron_vl_images)], rows=[0], max_new_tokens=NEW_TOKENS)
    tokens += [session.decode()[0] for _ in range(2)]
    session.prefill([request("two_images", neuron_vl_images)], rows=[1], max_new_tokens=NEW_TOKENS)
    tokens += [session.decode()[0] for _ in range(NEW_TOKENS - 3)]
    assert [rows for tag, rows, *_ in log.calls if tag == "cte"] == [1 if ctx_batch_size else 4] * 2
    alone, _ = neuron_vl()
    assert tokens == generate_vl(alone, [request("one_image", neuron_vl_images)], NEW_TOKENS,
                                 eos_token_ids=()).tokens[0]
