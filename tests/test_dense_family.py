"""The dense Qwen3.5 family (model_type qwen3_5: an MLP in place of the MoE): config parsing, the
tensor gate, every CPU backend against transformers' dense classes, TP shards, capacity from config
alone. (Token parity with Qwen3_5ForCausalLM / Qwen3_5ForConditionalGeneration, tied and untied,
runs in test_hf_parity through the "dense" and "dense_tied" tiny checkpoints; images in
tests/vl/test_vl_dense.py.)"""

from __future__ import annotations

import json

import pytest
import torch

from qwen35_neuron.analysis.roofline import preset_report
from qwen35_neuron.checkpoint import check_checkpoint, expected_mtp_shapes, expected_text_shapes
from qwen35_neuron.cli.main import main
from qwen35_neuron.config import load_model_config, parse_model_config
from qwen35_neuron.errors import UnsupportedConfigError
from qwen35_neuron.config.tp_shapes import check_tp_supported
from qwen35_neuron.runtime.session import generate
from qwen35_neuron.testing.family_configs import DENSE_FAMILY
from qwen35_neuron.testing.reference import hf_greedy
from qwen35_neuron.testing.tiny import build_tiny_checkpoint, text_only_config_dict, tiny_config_dict
from tiny_models import PROMPTS, make_engine

# published sizes: (text parameters in billions, roughly; tied embeddings)
PUBLISHED = {"0.8B": (0.75, True), "2B": (1.88, True), "4B": (4.21, True), "9B": (8.95, False), "27B": (26.9, False)}


@pytest.mark.parametrize("size", list(DENSE_FAMILY))
def test_published_dense_configs_parse_with_their_mlp(size):
    config = parse_model_config(DENSE_FAMILY[size])
    text = config.text
    assert not text.is_moe and text.num_experts == 0 and text.intermediate_size > 0
    assert text.head_dim == 256 and text.mtp_num_hidden_layers == 1
    assert text.tie_word_embeddings == PUBLISHED[size][1]
    shapes = expected_text_shapes(text)
    assert shapes["layers.0.mlp.gate_proj.weight"] == (text.intermediate_size, text.hidden_size)
    assert not any("experts" in name or name.endswith("mlp.gate.weight") for name in shapes)
    assert ("lm_head.weight" in shapes) != text.tie_word_embeddings
    assert expected_mtp_shapes(text)["mtp.layers.0.mlp.down_proj.weight"] == (text.hidden_size, text.intermediate_size)


@pytest.mark.parametrize("size", list(DENSE_FAMILY))
def test_capacity_from_config_alone(size):
    config = parse_model_config(DENSE_FAMILY[size])
    report = preset_report(config.text, config.vision, "trn2.3xlarge", tp=4 if size != "0.8B" else 2)
    billions = report.params.text_total / 1e9
    assert abs(billions - PUBLISHED[size][0]) < 0.01 * PUBLISHED[size][0]
    assert report.params.active == report.params.text_total - report.params.embedding  # dense: every weight
    text = report.format()
    assert "Qwen3.5 dense" in text and "MLP (I/R=" in text and "routed experts" not in text


def test_dense_config_without_intermediate_size_is_one_clear_error():
    raw = tiny_config_dict(dense=True)
    del raw["text_config"]["intermediate_size"]
    with pytest.raises(UnsupportedConfigError, match="intermediate_size"):
        parse_model_config(raw)


def test_tp_degree_must_divide_the_mlp():
    text = parse_model_config(tiny_config_dict(dense=True, intermediate_size=90)).text
    with pytest.raises(UnsupportedConfigError, match="intermediate_size 90 is not divisible by tp_degree 4"):
        check_tp_supported(text, 4)


def test_gate_passes_dense_and_names_a_moe_tensor_as_unexpected(checkpoint_dirs, tmp_path):
    assert check_checkpoint(checkpoint_dirs["dense"]).ok
    wrong = tmp_path / "moe-weights-dense-config"
    build_tiny_checkpoint(wrong, tiny_config_dict(), seed=1)  # MoE weights ...
    (wrong / "config.json").write_text(json.dumps(tiny_config_dict(dense=True)))  # ... under a dense config.json
    report = check_checkpoint(wrong)
    assert not report.ok
    assert any("layers.0.mlp.gate_proj.weight" in line for line in report.problems)
    assert any("layers.0.mlp.experts" in line and line.startswith("unexpected") for line in report.problems)


@pytest.mark.parametrize("name", ["dense", "dense_tied"])
@pytest.mark.parametrize("tp", [2, 4])
def test_simulated_tp_equals_dense_backend(checkpoint_dirs, name, tp):
    prompts = [list(p) for p in PROMPTS]
    one = generate(make_engine(checkpoint_dirs[name]), prompts, 10, eos_token_ids=())
    sharded = make_engine(checkpoint_dirs[name], backend="simulated-tp", tp_degree=tp)
    assert sharded.models[1].layers[0].mlp.down_proj.weight.shape[1] == 96 // tp  # each rank holds 1/tp
    ranked = generate(sharded, prompts, 10, eos_token_ids=())
    assert ranked.tokens == one.tokens
    for ours, ref in zip(ranked.logits, one.logits):
        assert (torch.stack(ours) - torch.stack(ref)).abs().max() < 1e-4


def test_nki_sim_backend_equals_transformers(checkpoint_dirs, hf_models):
    engine = make_engine(checkpoint_dirs["dense"], backend="nki-sim", batch_size=3)
    ours = generate(engine, [list(p) for p in PROMPTS], 6, eos_token_ids=())
    for row, prompt in enumerate(PROMPTS):
        tokens, logits = hf_greedy(hf_models("dense", "causal"), list(prompt), 6)
        assert ours.tokens[row] == tokens
        assert (torch.stack(ours.logits[row]) - logits).abs().max() < 2e-4


def test_text_only_export_loads_and_matches(tmp_path, hf_models):
    """A Qwen3_5ForCausalLM export (model.* keys, qwen3_5_text config.json) reads the same weights."""
    path = build_tiny_checkpoint(tmp_path / "dense-text", tiny_config_dict(dense=True), seed=1, text_only=True)
    assert load_model_config(path).model_type == "qwen3_5_text"
    assert json.loads((path / "config.json").read_text())["architectures"] == ["Qwen3_5ForCausalLM"]
    ours = generate(make_engine(str(path)), [list(PROMPTS[0])], 8, eos_token_ids=())
    assert ours.tokens[0] == hf_greedy(hf_models("dense", "causal"), list(PROMPTS[0]), 8)[0]


def test_cli_generate_and_roofline_on_a_dense_checkpoint(checkpoint_dirs, capsys, tmp_path):
    args = ["generate", "--model", checkpoint_dirs["dense_tied"], "--input-ids", "11,42,7,99", "--max-new-tokens", "4",
            "--json"]
    assert main(args) == 0
    tokens = json.loads(capsys.readouterr().out)["tokens"]
    assert len(tokens) == 1 and len(tokens[0]) == 4
    (tmp_path / "config.json").write_text(json.dumps(DENSE_FAMILY["9B"]))
    assert main(["roofline", "--model", str(tmp_path), "--tp", "4"]) == 0
    assert "Qwen3.5 dense" in capsys.readouterr().out


def test_text_only_config_dict_names_the_dense_classes():
    text = text_only_config_dict(tiny_config_dict(dense=True))
    assert text["model_type"] == "qwen3_5_text" and text["architectures"] == ["Qwen3_5ForCausalLM"]
