"""MTP speculative decoding: output equal to plain greedy decoding token for token (dense, simulated
TP and nki-sim backends; K = 1..3; MoE and dense MTP heads; random heads that draft badly and heads
built to draft well), the DeltaNet state contract of the verify step, acceptance statistics, the
static graphs, and the user errors."""

from __future__ import annotations

import json

import pytest
import torch

from qwen35_neuron.checkpoint import expected_mtp_shapes
from qwen35_neuron.cli.main import main
from qwen35_neuron.config import RunConfig, load_model_config
from qwen35_neuron.errors import CheckpointError, InputError
from qwen35_neuron.model.export import example_step_inputs, export_draft, export_verify
from qwen35_neuron.model.speculative import accepted_commit
from qwen35_neuron.runtime.session import GenerationSession, generate, text_rotary_positions
from qwen35_neuron.runtime.speculative import (
    SpeculativeSession,
    generate_speculative,
    load_speculative_engine,
)
from qwen35_neuron.testing.drafting import build_drafting_checkpoint
from qwen35_neuron.testing.tiny import build_tiny_checkpoint, tiny_config_dict
from tiny_models import PROMPTS

NEW = 16
RUN = dict(batch_size=4, context_buckets=(8, 16, 32), max_seq_len=64, gdr_chunk_size=8)
# (dense family?, head built to draft well?)
CHECKPOINTS = {"moe_random": (False, False), "dense_random": (True, False),
               "moe_drafting": (False, True), "dense_drafting": (True, True)}


@pytest.fixture(scope="session")
def mtp_dirs(tmp_path_factory) -> dict[str, str]:
    dirs = {}
    for name, (dense, drafting) in CHECKPOINTS.items():
        path = tmp_path_factory.mktemp(f"mtp-{name}")
        if drafting:
            build_drafting_checkpoint(path, tiny_config_dict(dense=dense), seed=1, mix_scale=0.2)
        else:
            build_tiny_checkpoint(path, tiny_config_dict(dense=dense), seed=1, mtp_layers=1)
        dirs[name] = str(path)
    return dirs


def _spec(model_dir: str, **run):
    return load_speculative_engine(model_dir, RunConfig(**{**RUN, **run}))[1]


def _assert_equal_to_plain(spec, num_drafts: int, prompts=PROMPTS, new=NEW):
    prompts = [list(p) for p in prompts]
    plain = generate(spec.engine, prompts, new, eos_token_ids=())
    ours = generate_speculative(spec, prompts, new, num_drafts, eos_token_ids=())
    assert ours.tokens == plain.tokens
    for mine, theirs in zip(ours.logits, plain.logits):
        assert len(mine) == len(theirs) == new
        assert (torch.stack(mine) - torch.stack(theirs)).abs().max() < 1e-4  # the same positions' logits
    return ours.acceptance


@pytest.mark.parametrize("name", list(CHECKPOINTS))
@pytest.mark.parametrize("num_drafts", [1, 2, 3])
def test_speculative_equals_plain_greedy_dense_backend(mtp_dirs, name, num_drafts):
    stats = _assert_equal_to_plain(_spec(mtp_dirs[name]), num_drafts)
    assert stats.verify_steps > 0 and all(p > 0 for p in stats.proposed)
    if CHECKPOINTS[name][1]:  # built to draft well: every depth accepts, and some drafts are rejected
        assert all(a > 0 for a in stats.accepted)
        assert stats.accepted[0] < stats.proposed[0]
        assert stats.tokens_per_step > 1.3
    else:
        assert stats.tokens_per_step < 1.3  # a random head drafts (almost) nothing acceptable


@pytest.mark.parametrize("name, num_drafts", [("moe_drafting", 1), ("moe_drafting", 2), ("moe_drafting", 3),
                                              ("dense_drafting", 2), ("moe_random", 3)])
def test_speculative_equals_plain_greedy_simulated_tp(mtp_dirs, name, num_drafts):
    spec = _spec(mtp_dirs[name], backend="simulated-tp", tp_degree=2)
    heads = spec.engine.text.num_attention_heads
    assert spec.drafters[1].head.layers[0].self_attn.q_proj.weight.shape[0] == heads * 2 * 32 // 2  # sharded
    _assert_equal_to_plain(spec, num_drafts)


def test_speculative_equals_plain_greedy_nki_sim(mtp_dirs):
    """The main model's DeltaNet and attention ops through the emulated NKI kernels, K = 1..3 (slow: one
    prompt, few tokens). The drafter runs the torch twins here: drafts only decide how many tokens a
    step yields, never which, and the emulated attention costs ~2 s a call."""
    from qwen35_neuron.model.model_ops import TORCH_OPS

    spec = _spec(mtp_dirs["moe_drafting"], backend="nki-sim", batch_size=1)
    for drafter in spec.drafters:
        drafter.ops = TORCH_OPS
    prompt = [list(PROMPTS[0])]
    plain = generate(spec.engine, prompt, 5, eos_token_ids=())
    for num_drafts in (1, 2, 3):
        ours = generate_speculative(spec, prompt, 5, num_drafts, eos_token_ids=())
        assert ours.tokens == plain.tokens
        assert (torch.stack(ours.logits[0]) - torch.stack(plain.logits[0])).abs().max() < 1e-4
        assert ours.acceptance.accepted[0] > 0


def test_rejected_drafts_leave_no_trace(mtp_dirs):
    """Rows that accept 0, 1 and 3 drafts in one verify call end with exactly the DeltaNet conv and
    recurrent state (and the K/V of every visible slot) that plain decoding of the accepted tokens
    leaves."""
    model_dir = mtp_dirs["moe_random"]
    prompts = [list(p) for p in PROMPTS]
    accepts = [0, 1, 3]
    truth = generate(_spec(model_dir).engine, prompts, 6, eos_token_ids=()).tokens

    spec = _spec(model_dir)
    session = SpeculativeSession(spec, num_drafts=3)
    session.prefill(prompts)
    for row, accept in enumerate(accepts):  # drafts: the true continuation up to `accept`, then a wrong token
        drafts = truth[row][1:1 + accept] + [(truth[row][1 + accept] + 1) % 250]
        session.drafts[row] = torch.tensor((drafts + [0, 0, 0])[:3])
    new_tokens = session.step()
    assert [len(t) for t in new_tokens[:3]] == [a + 1 for a in accepts]  # rows commit different counts
    assert [t for t in new_tokens[:3]] == [truth[row][1:2 + a] for row, a in enumerate(accepts)]

    plain = GenerationSession(_spec(model_dir).engine)
    plain.prefill(prompts)
    engine = plain.engine
    for _ in range(max(accepts) + 1):
        before = [s.clone() for s in engine.states[0]]
        plain.decode()
        lengths = [r.length for r in plain.rows]
        for row, accept in enumerate(accepts):
            if lengths[row] == len(prompts[row]) + accept + 1:  # this row's accepted tokens are all decoded
                _assert_row_states_equal(spec.engine, engine, row, lengths[row])
        del before


def _assert_row_states_equal(spec_engine, plain_engine, row: int, length: int) -> None:
    for spec_state, plain_state, spec_spec in zip(spec_engine.states[0], plain_engine.states[0], spec_engine.specs[0]):
        ours, theirs = spec_state[row], plain_state[row]
        if spec_spec.kind in ("k_cache", "v_cache"):  # only the visible slots must agree
            ours, theirs = ours[:, :length], theirs[:, :length]
        assert (ours.float() - theirs.float()).abs().max() < 1e-5, (row, spec_spec.name)


def test_accepted_commit_counts_leading_matches_only():
    logits = torch.full((3, 4, 8), -1.0)
    greedy = torch.tensor([[5, 6, 7, 1], [5, 2, 7, 1], [3, 3, 3, 3]])
    logits.scatter_(2, greedy[..., None], 1.0)
    drafts = torch.tensor([[0, 5, 6, 7], [0, 5, 6, 7], [0, 3, 3, 3]])
    commit = accepted_commit(logits, drafts, torch.tensor([4, 4, 2]))
    assert commit.tolist() == [4, 2, 2]  # all 3; first only (a later match does not count); capped by valid_len
    assert accepted_commit(logits, drafts, torch.tensor([0, 1, 4])).tolist() == [0, 1, 4]


def test_rows_at_the_cache_capacity_send_fewer_drafts(mtp_dirs):
    """A row 3 slots before max_seq_len verifies only the slots that fit, and stops where plain decoding
    stops (cache full), with the same tokens."""
    run = dict(max_seq_len=16, context_buckets=(8, 16))
    prompt = list(PROMPTS[1])  # 13 tokens
    plain = GenerationSession(_spec(mtp_dirs["moe_drafting"], **run).engine)
    expected = plain.prefill([prompt], max_new_tokens=3)
    while (token := plain.decode()[0]) is not None:
        expected.append(token)
    session = SpeculativeSession(_spec(mtp_dirs["moe_drafting"], **run), num_drafts=3)
    ours = session.prefill([prompt], max_new_tokens=3)
    while new := session.step()[0]:
        ours.extend(new)
    assert ours == expected and len(ours) == 16 - 13 + 1
    assert session.stats.proposed == [1, 1, 0]  # the first verify sent 2 drafts (3 slots fit), not 3


def test_eos_stops_where_plain_decoding_stops(mtp_dirs):
    spec = _spec(mtp_dirs["dense_drafting"])
    free = generate(spec.engine, [list(PROMPTS[0])], NEW, eos_token_ids=()).tokens[0]
    stop = free[5]
    ours = generate_speculative(spec, [list(PROMPTS[0])], NEW, 3, eos_token_ids=(stop,))
    assert ours.tokens[0] == free[: free.index(stop)]


def test_bfloat16_speculative_equals_plain_greedy(mtp_dirs):
    """bf16 weights and activations (the router stays fp32): verify of K+1 slots and one-token decoding
    pick the same tokens."""
    spec = _spec(mtp_dirs["moe_drafting"], dtype="bfloat16")
    prompts = [list(p) for p in PROMPTS]
    plain = generate(spec.engine, prompts, NEW, eos_token_ids=())
    assert generate_speculative(spec, prompts, NEW, 3, eos_token_ids=()).tokens == plain.tokens


def test_mtp_head_reads_the_published_key_names(mtp_dirs):
    """The head loads strictly from exactly the mtp.* names the published checkpoints use."""
    for name in ("moe_random", "dense_random"):
        spec = _spec(mtp_dirs[name])
        text = load_model_config(mtp_dirs[name]).text
        published = {k[len("mtp."):] for k in expected_mtp_shapes(text, 1)}
        assert set(spec.drafters[0].head.state_dict()) == published
        assert ("layers.0.mlp.experts.gate_up_proj" in published) == text.is_moe


def test_verify_and_draft_steps_export_as_static_graphs(mtp_dirs):
    """The Neuron verify graph (K+1 slots) and draft graph trace statically (the dense family keeps this
    quick; the static MoE's export is covered by test_export)."""
    spec = _spec(mtp_dirs["dense_drafting"], moe_impl="static", batch_size=2)
    model, specs = spec.engine.models[0], spec.engine.specs[0]
    torch.manual_seed(0)
    inputs = list(example_step_inputs(2, 4, specs, spec.engine.text.vocab_size))  # K = 3: 4 slots
    inputs[5:] = [torch.randn_like(s) * 0.1 for s in inputs[5:]]
    verify = export_verify(model, tuple(inputs))
    exported = verify.module()(*inputs)
    with torch.no_grad():
        logits, hidden, commit, states = model.speculative_step(*inputs[:5], list(inputs[5:]))
    assert torch.equal(exported[2], commit) and (exported[0] - logits).abs().max() < 1e-5
    for got, want in zip(exported[3:], states):
        assert (got - want).abs().max() < 1e-5
    kv = [torch.randn_like(s) * 0.1 for s in spec.states[0]]
    draft_inputs = (inputs[0], hidden, inputs[2], commit, torch.zeros(2, dtype=torch.long), inputs[4], *kv)
    draft = export_draft(spec.drafters[0], 3, draft_inputs)
    with torch.no_grad():
        drafts, _ = spec.drafters[0](*draft_inputs[:6], list(kv), 3)
    assert torch.equal(draft.module()(*draft_inputs)[0], drafts) and drafts.shape == (2, 3)
    for program in (verify, draft):
        ops = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
        assert not any("nonzero" in op or "_local_scalar_dense" in op for op in ops)


def test_cli_json_carries_acceptance_and_equals_plain(mtp_dirs, capsys):
    args = ["generate", "--model", mtp_dirs["moe_drafting"], "--input-ids", "11,42,7,99,3", "--input-ids", "5,6",
            "--max-new-tokens", "10", "--json"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(args + ["--speculate", "mtp", "--num-speculative-tokens", "3"]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert ours["tokens"] == plain["tokens"]
    stats = ours["speculative"]
    assert stats["num_speculative_tokens"] == 3 and len(stats["acceptance_by_depth"]) == 3
    assert stats["tokens_per_step"] > 1 and stats["verify_steps"] > 0


@pytest.mark.parametrize("extra, message", [
    (["--num-speculative-tokens", "4"], "--num-speculative-tokens must be in 1..3"),
    (["--num-speculative-tokens", "0"], "--num-speculative-tokens must be in 1..3"),
    (["--do-sample"], "greedy"),
])
def test_cli_speculative_errors(mtp_dirs, capsys, extra, message):
    args = ["generate", "--model", mtp_dirs["moe_random"], "--input-ids", "1,2", "--speculate", "mtp"]
    assert main(args + extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_num_speculative_tokens_needs_speculate(tiny_dir, capsys):
    assert main(["generate", "--model", tiny_dir, "--input-ids", "1,2", "--num-speculative-tokens", "2"]) == 2
    assert "needs --speculate mtp" in capsys.readouterr().err


def test_checkpoint_without_mtp_is_one_clear_error(tiny_dir, capsys):
    with pytest.raises(CheckpointError, match="no mtp.* tensors"):
        load_speculative_engine(tiny_dir, RunConfig(**RUN))
    assert main(["generate", "--model", tiny_dir, "--input-ids", "1,2", "--speculate", "mtp"]) == 2
    assert "has no mtp.* tensors" in capsys.readouterr().err


def test_mis_shaped_mtp_head_is_named(tmp_path):
    path = build_tiny_checkpoint(tmp_path / "two-mtp", tiny_config_dict(), seed=1, mtp_layers=2)
    with pytest.raises(CheckpointError, match="mtp.layers.1"):
        load_speculative_engine(path, RunConfig(**RUN))


def test_batch_larger_than_engine_is_refused_before_any_state_changes(mtp_dirs):
    spec = _spec(mtp_dirs["moe_random"], batch_size=2)
    with pytest.raises(InputError, match="exceed the engine batch_size"):
        generate_speculative(spec, [list(p) for p in PROMPTS], 4, 2)
