"""Images through the NxDI text graphs, on a CPU with the SDK stand-ins.

The application, NxDI's wrapper call path (fake_wrapper) and our wrapper subclass run as on trn2;
the compiled graphs are the traced module itself. The CPU VL path (``qwen35_neuron.vl``, whose tokens
equal transformers' in tests/vl) is the reference. What this cannot show: compilation, real
collectives, device numerics (tests/neuron/test_trn2_vl.py does, on a trn2 host).
"""

from __future__ import annotations

import pytest
import torch

from nxdi_driver import TINY, NxdiDriver, build, build_application
from qwen35_neuron.config.neuron_settings import NeuronSettings
from qwen35_neuron.errors import InputError
from qwen35_neuron.runtime.vl_session import load_vl_session
from qwen35_neuron.vl import VLRequest, generate_vl
from tiny_models import PROMPTS
from vl_cases import CASES, MIXED, NEW_TOKENS, VISION_BUCKETS, cpu_run_config, request

LOGIT_TOL = 1e-4  # fp32 both sides; the static-shape MoE sums in another order than the CPU's eager one


@pytest.fixture
def neuron_vl(fake_sdk_modules, neuron_vl_dir):
    """make(**settings) -> (NeuronVLSession on a CPU-'loaded' application, its traced module)."""
    import qwen35_neuron.neuron as neuron
    from qwen35_neuron.neuron.vl_session import load_neuron_vl_session

    def make(**changes):
        app, module = build_application(neuron, neuron_vl_dir, **changes)
        return load_neuron_vl_session(app, vision_buckets=VISION_BUCKETS), module

    return make


@pytest.fixture(scope="module")
def cpu_vl(neuron_vl_dir):
    """The CPU VL session with the stand-in model's rows, buckets and cache length."""
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
    session, _ = neuron_vl()
    requests = [request(case, neuron_vl_images)]
    ours = generate_vl(session, requests, NEW_TOKENS)
    assert len(ours.tokens[0]) >= 6
    assert_same_generation(ours, generate_vl(cpu_vl, requests, NEW_TOKENS))
    calls = (session.model.context_encoding_model.model.calls, session.model.token_generation_model.model.calls)
    made = len(ours.tokens[0])
    assert calls == (1, made - 1 if made == NEW_TOKENS else made)  # one CTE, then TKG until max tokens or EOS


@pytest.mark.parametrize("ctx_batch_size", [None, 1])
def test_mixed_batch_equals_the_cpu_vl_path(neuron_vl, cpu_vl, neuron_vl_images, ctx_batch_size):
    """Rows with and without images in one CTE call (ctx 4: NxDI pads 3 rows to 4), or one row per CTE
    graph call (ctx 1: NxDI re-buckets each row, the VL inputs are cut to fit)."""
    session, _ = neuron_vl(ctx_batch_size=ctx_batch_size)
    requests = [request(c, neuron_vl_images) for c in MIXED]
    ours = generate_vl(session, requests, NEW_TOKENS)
    assert_same_generation(ours, generate_vl(cpu_vl, requests, NEW_TOKENS))
    assert [r.rope_delta for r in session.rows[:3]] == [3 - 6, 0, (3 - 6) + (2 - 4)]
    if ctx_batch_size == 1:
        assert session.model.context_encoding_model.model.calls == 3


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
def test_text_outputs_of_the_graphs_are_unchanged_by_the_vl_inputs(fake_sdk_modules, tiny_dir, dtype):
    """Bit for bit, logits and every state buffer: the graphs without VL inputs (the old ones), with the
    text values the wrapper fills in, and with text values built by cte_inputs / tkg_inputs."""
    import qwen35_neuron.neuron as neuron
    from qwen35_neuron.neuron.generation import decode_mask, right_padded
    from qwen35_neuron.neuron.vl_inputs import cte_inputs, text_inputs, tkg_inputs

    _, module, _ = build(neuron, tiny_dir, dtype=dtype)
    driver = NxdiDriver(module, TINY["context_buckets"], TINY["max_length"])
    driver(*right_padded([[9, 8, 7, 6, 5, 4, 3, 2, 1]] * 4), torch.arange(4))  # state in every row
    hidden, torch_dtype = module.config.hidden_size, getattr(torch, dtype)
    ids, mask, positions = right_padded([list(p) for p in PROMPTS] + [[3, 1, 4]])
    ids, mask, positions = (torch.nn.functional.pad(t, (0, 16 - t.shape[1]), value=v) for t, v in
                            ((ids, 0), (mask, 0), (positions, 1)))
    standard = [ids, mask, positions, torch.arange(4, dtype=torch.int32), torch.ones(4, 3),
                torch.zeros(4, dtype=torch.int32), torch.zeros(4, dtype=torch.int32)]
    rotary = positions[:, :1] + torch.arange(16)
    explicit = cte_inputs(torch.zeros(4, 16, hidden), torch.zeros(4, 16), rotary[None].expand(3, -1, -1))
    variants = [(), text_inputs(True, positions, hidden, torch_dtype), explicit]
    old, *new = [_run_graph(module, standard + list(v)) for v in variants]
    for outputs in new:
        assert len(outputs) == len(old) and all(torch.equal(a, b) for a, b in zip(old, outputs))
    lengths = [5, 13, 3, 3]
    step = [torch.tensor([[7], [8], [9], [0]], dtype=torch.int32), decode_mask(lengths, [True, True, True, False]),
            torch.tensor([[n] for n in lengths], dtype=torch.int32)] + standard[3:]
    step[1] = torch.nn.functional.pad(step[1], (0, TINY["max_length"] - step[1].shape[1]))
    old, *new = [_run_graph(module, step + list(v)) for v in ((), text_inputs(False, step[2], hidden, torch_dtype),
                                                             tkg_inputs([0, 0, 0, 0]))]
    for outputs in new:
        assert all(torch.equal(a, b) for a, b in zip(old, outputs))


def test_text_through_the_application_equals_the_old_graphs(fake_sdk_modules, tiny_dir):
    """generate_direct (what NxDI's HF adapter does too: no llava_args) on the application, whose wrapper
    adds the text VL inputs, gives the tokens of the seven-input driver."""
    import qwen35_neuron.neuron as neuron
    from qwen35_neuron.neuron.generation import generate_direct

    prompts = [list(p) for p in PROMPTS]
    app, _ = build_application(neuron, tiny_dir)
    _, module, _ = build(neuron, tiny_dir)
    old = generate_direct(NxdiDriver(module, TINY["context_buckets"], TINY["max_length"]), prompts, 8)
    assert generate_direct(app, prompts, 8).tokens == old.tokens


def test_wrapper_traces_and_fills_the_vl_inputs(fake_sdk_modules, tiny_dir):
    import qwen35_neuron.neuron as neuron

    app, _ = build_application(neuron, tiny_dir)
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
    session, _ = neuron_vl()
    with pytest.raises(InputError, match="placeholders"):
        session.prefill([VLRequest(CASES["one_image"][0], [])])
    with pytest.raises(InputError, match="distinct rows"):
        session.prefill([request("no_image", neuron_vl_images)] * 2, rows=[1, 1])
    assert session.model.context_encoding_model.model.calls == 0


def test_a_new_request_beside_a_running_one(neuron_vl, neuron_vl_images):
    """NxDI pads a partial CTE batch by replaying its first row into the other rows: with a 4-row CTE
    graph the session refuses to start row 1 while row 0 runs; with ctx_batch_size=1 row 0 goes on
    exactly as alone."""
    session, _ = neuron_vl()
    session.prefill([request("one_image", neuron_vl_images)], rows=[0], max_new_tokens=NEW_TOKENS)
    with pytest.raises(InputError, match="would overwrite the running requests in rows \\[0\\]"):
        session.prefill([request("no_image", neuron_vl_images)], rows=[1], max_new_tokens=NEW_TOKENS)

    session, _ = neuron_vl(ctx_batch_size=1)
    tokens = session.prefill([request("one_image", neuron_vl_images)], rows=[0], max_new_tokens=NEW_TOKENS)
    tokens += [session.decode()[0] for _ in range(2)]
    session.prefill([request("two_images", neuron_vl_images)], rows=[1], max_new_tokens=NEW_TOKENS)
    tokens += [session.decode()[0] for _ in range(NEW_TOKENS - 3)]
    alone, _ = neuron_vl()
    assert tokens == generate_vl(alone, [request("one_image", neuron_vl_images)], NEW_TOKENS,
                                 eos_token_ids=()).tokens[0]
