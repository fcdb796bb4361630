"""The whole tiny model on the ``nki-sim`` backend: every DeltaNet and attention op runs through our
emulated NKI kernels, and the tokens equal transformers'."""

from __future__ import annotations

import json

import torch

from qwen35_neuron.checkpoint import load_text_state_dict
from qwen35_neuron.cli.main import main
from qwen35_neuron.config import RunConfig, load_model_config
from qwen35_neuron.kernels.nki_ops import nki_sim_ops
from qwen35_neuron.runtime.engine import TextEngine
from qwen35_neuron.runtime.session import generate
from qwen35_neuron.testing.reference import hf_greedy
from tiny_models import PROMPTS

NEW = 8


def test_head_dim_256_model_on_emulated_kernels_matches_transformers(checkpoint_dirs, hf_models):
    model_dir = checkpoint_dirs["head_dim_256"]
    config = load_model_config(model_dir)
    run = RunConfig(backend="nki-sim", batch_size=3, context_buckets=(16,), max_seq_len=32)
    launches: list = []
    engine = TextEngine.from_state_dict(config.text, run, load_text_state_dict(model_dir, config))
    for model in engine.models:  # same kernels, with a launch record
        model.ops = nki_sim_ops(record=launches)
    ours = generate(engine, [list(p) for p in PROMPTS], NEW, eos_token_ids=())
    reference = hf_models("head_dim_256", "causal")
    for row, prompt in enumerate(PROMPTS):
        tokens, logits = hf_greedy(reference, list(prompt), NEW)
        assert ours.tokens[row] == tokens
        assert (torch.stack(ours.logits[row]) - logits).abs().max() < 2e-4
    kinds = {name for name, _ in launches}
    assert {"gdn_prefill", "gdn_decode_fused", "causal_conv1d_cte", "flash_attention_d256"} <= kinds
    linear, full = len(config.text.linear_layer_ids), len(config.text.full_attention_layer_ids)
    counts = {kind: sum(1 for name, _ in launches if name == kind) for kind in kinds}
    # decode runs at gdn_tkg's boundary: gates and the gated RMSNorm inside the fused kernel
    assert counts["gdn_prefill"] == linear and counts["gdn_decode_fused"] == linear * (NEW - 1)
    assert counts["flash_attention_d256"] == full * NEW


def test_cli_generate_on_nki_sim_equals_dense(capsys, tiny_dir):
    args = ["generate", "--model", tiny_dir, "--input-ids", "11,42,7,99", "--max-new-tokens", "4", "--json"]
    assert main(args + ["--backend", "nki-sim"]) == 0
    sim = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    assert sim == json.loads(capsys.readouterr().out)


def test_kernels_command_prints_a_modelled_report(capsys):
    assert main(["kernels", "--tp", "8", "--seq", "128", "--batch", "1", "--lnc", "1"]) == 0
    out = capsys.readouterr().out
    assert "modelled, uncalibrated" in out and "busiest engine" in out and "TP 8" in out
