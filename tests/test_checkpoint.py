"""Checkpoint layer: layouts, the tensor gate, canonical loading, and agreement with transformers."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from qwen35_neuron.checkpoint import (
    CheckpointLayout,
    CheckpointReader,
    StackedExperts,
    check_checkpoint,
    classify_key,
    expected_mtp_shapes,
    expected_text_shapes,
    expected_vision_shapes,
    iter_text_tensors,
    load_mtp_state_dict,
    load_text_state_dict,
    load_vision_state_dict,
)
from qwen35_neuron.config import load_model_config, parse_model_config
from qwen35_neuron.errors import CheckpointError, UnsupportedConfigError
from qwen35_neuron.testing import (
    build_tiny_checkpoint,
    hf_parameter_shapes,
    load_hf_reference,
    load_hf_text_reference,
    tiny_config_dict,
)

ATTN_K = "model.language_model.layers.3.self_attn.k_proj.weight"


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    """The same seeded weights in every layout we accept."""
    root = tmp_path_factory.mktemp("ckpt")
    specs = {
        "fused": dict(layout="fused"),
        "per_expert": dict(layout="per_expert"),
        "sharded": dict(layout="per_expert", shards=3),
        "fused_sharded": dict(layout="fused", shards=2),
        "text_only": dict(layout="fused", text_only=True),
        "mtp": dict(layout="per_expert", mtp_layers=1),
    }
    return {name: build_tiny_checkpoint(root / name, seed=7, **kw) for name, kw in specs.items()}


def _rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy a single-file checkpoint, letting ``edit`` change its tensor dict."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "generation_config.json"):
        shutil.copy(src / name, dst / name)
    tensors = load_file(str(src / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


# ---------------------------------------------------------------------------------------------
# layouts and loading
# ---------------------------------------------------------------------------------------------


def test_all_layouts_load_to_identical_canonical_state_dicts(ckpts):
    reference = load_text_state_dict(ckpts["fused"])
    expected = expected_text_shapes(load_model_config(ckpts["fused"]).text)
    assert list(reference) == list(expected)
    assert {k: tuple(v.shape) for k, v in reference.items()} == expected
    for name in ("per_expert", "sharded", "fused_sharded", "text_only", "mtp"):
        state = load_text_state_dict(ckpts[name])
        assert list(state) == list(reference), name
        unequal = [k for k in reference if not torch.equal(state[k], reference[k])]
        assert unequal == [], f"{name}: {unequal}"
    vision = load_vision_state_dict(ckpts["fused"])
    assert "blocks.0.attn.qkv.weight" in vision and not any(k.startswith("visual.") for k in vision)
    for name in ("per_expert", "sharded"):
        other = load_vision_state_dict(ckpts[name])
        assert all(torch.equal(other[k], vision[k]) for k in vision)


def test_per_expert_tensors_are_stacked_gate_rows_then_up_rows(ckpts):
    raw = load_file(str(ckpts["per_expert"] / "model.safetensors"))
    fused = load_text_state_dict(ckpts["per_expert"])["layers.1.mlp.experts.gate_up_proj"]
    prefix = "model.language_model.layers.1.mlp.experts.5."
    assert fused.shape == (8, 64, 64)
    assert torch.equal(fused[5, :32], raw[prefix + "gate_proj.weight"])
    assert torch.equal(fused[5, 32:], raw[prefix + "up_proj.weight"])
    down = load_text_state_dict(ckpts["per_expert"])["layers.1.mlp.experts.down_proj"]
    assert torch.equal(down[5], raw[prefix + "down_proj.weight"])


def test_layout_detection_and_sharded_reader(ckpts):
    layout = CheckpointLayout.from_reader(CheckpointReader(ckpts["sharded"]))
    assert layout.expert_layout == "per_expert"
    assert isinstance(layout.sources["layers.0.mlp.experts.gate_up_proj"], StackedExperts)
    with CheckpointReader(ckpts["sharded"]) as reader:
        assert len(reader.files) == 3
        assert reader.shape(ATTN_K) == (64, 64) and reader.dtype(ATTN_K) == "F32"
    assert CheckpointLayout.from_reader(CheckpointReader(ckpts["fused"])).expert_layout == "fused"


@pytest.mark.parametrize("raw, expected", [
    ("model.language_model.layers.0.mlp.gate.weight", ("text", "layers.0.mlp.gate.weight")),
    ("model.layers.0.mlp.gate.weight", ("text", "layers.0.mlp.gate.weight")),
    ("language_model.model.norm.weight", ("text", "norm.weight")),
    ("language_model.layers.2.input_layernorm.weight", ("text", "layers.2.input_layernorm.weight")),
    ("language_model.lm_head.weight", ("text", "lm_head.weight")),
    ("lm_head.weight", ("text", "lm_head.weight")),
    ("embed_tokens.weight", ("text", "embed_tokens.weight")),
    ("model.visual.blocks.0.attn.qkv.bias", ("vision", "visual.blocks.0.attn.qkv.bias")),
    ("mtp.layers.0.mlp.experts.3.up_proj.weight", ("mtp", "mtp.layers.0.mlp.experts.3.up_proj.weight")),
    ("model.mtp.fc.weight", ("mtp", "mtp.fc.weight")),
    ("vision_tower.blocks.0.weight", None),
])
def test_classify_key(raw, expected):
    assert classify_key(raw) == expected


def test_streaming_yields_model_order_one_tensor_at_a_time(ckpts):
    stream = iter_text_tensors(ckpts["per_expert"], dtype=None)
    first_name, first = next(stream)
    assert first_name == "embed_tokens.weight" and first.shape == (256, 64)
    rest = [name for name, _ in stream]
    assert rest[-2:] == ["norm.weight", "lm_head.weight"]
    assert rest.index("layers.0.mlp.experts.gate_up_proj") < rest.index("layers.1.linear_attn.in_proj_qkv.weight")


def test_bfloat16_checkpoint_keeps_or_converts_dtype(tmp_path, ckpts):
    path = build_tiny_checkpoint(tmp_path / "bf16", seed=7, dtype=torch.bfloat16)
    assert check_checkpoint(path).ok
    kept = load_text_state_dict(path, dtype=None)
    assert kept["norm.weight"].dtype == torch.bfloat16
    as_fp32 = load_text_state_dict(path)
    reference = load_text_state_dict(ckpts["fused"])
    assert as_fp32["layers.0.mlp.experts.down_proj"].dtype == torch.float32
    assert torch.equal(as_fp32["layers.0.mlp.experts.down_proj"],
                       reference["layers.0.mlp.experts.down_proj"].to(torch.bfloat16).float())


def test_tied_embeddings_have_no_lm_head_and_load_as_embed(tmp_path):
    path = build_tiny_checkpoint(tmp_path / "tied", tiny_config_dict(tie_word_embeddings=True))
    with CheckpointReader(path) as reader:
        assert "lm_head.weight" not in reader
    report = check_checkpoint(path)
    assert report.ok, report.format()
    state = load_text_state_dict(path)
    assert state["lm_head.weight"] is state["embed_tokens.weight"]
    hf = load_hf_reference(path)
    assert torch.equal(hf.lm_head.weight, state["embed_tokens.weight"])


def test_mtp_tensors_are_recognised_kept_and_never_unexpected(ckpts):
    report = check_checkpoint(ckpts["mtp"])
    assert report.ok, report.format()
    assert report.unexpected == [] and report.mtp_notes == []
    text = load_model_config(ckpts["mtp"]).text
    shapes = expected_mtp_shapes(text, 1)
    assert report.mtp_tensors == len(shapes) - 2 + 3 * text.num_experts  # experts stored per expert
    mtp = load_mtp_state_dict(ckpts["mtp"])
    assert {f"mtp.{k}": tuple(v.shape) for k, v in mtp.items()} == shapes


def test_broken_mtp_is_noted_but_does_not_fail(tmp_path, ckpts):
    path = _rewrite(ckpts["mtp"], tmp_path / "bad_mtp", lambda t: t.pop("mtp.fc.weight"))
    report = check_checkpoint(path)
    assert report.ok
    assert any("mtp.fc.weight" in note for note in report.mtp_notes)


# ---------------------------------------------------------------------------------------------
# the gate
# ---------------------------------------------------------------------------------------------


def test_gate_passes_clean_checkpoints_from_headers_only(ckpts, monkeypatch):
    def no_data(self, key):
        raise AssertionError(f"the gate read tensor data ({key})")

    monkeypatch.setattr(CheckpointReader, "get", no_data)
    for name, path in ckpts.items():
        report = check_checkpoint(path)
        assert report.ok, report.format()
        assert report.checked_tensors == (72 if name == "text_only" else 105), name
        assert "OK" in report.format()


def test_gate_names_a_removed_tensor(tmp_path, ckpts):
    path = _rewrite(ckpts["fused"], tmp_path / "removed", lambda t: t.pop(ATTN_K))
    report = check_checkpoint(path)
    assert not report.ok
    assert [(p.name, p.expected) for p in report.missing] == [("layers.3.self_attn.k_proj.weight", (64, 64))]
    assert report.mismatched == [] and report.unexpected == []
    with pytest.raises(CheckpointError, match=r"missing: layers\.3\.self_attn\.k_proj\.weight: expected \[64, 64\]"):
        report.raise_if_failed()
    with pytest.raises(CheckpointError, match="k_proj"):
        load_text_state_dict(path)


def test_gate_names_a_misshaped_tensor(tmp_path, ckpts):
    path = _rewrite(ckpts["fused"], tmp_path / "shape", lambda t: t.update({ATTN_K: torch.zeros(63, 64)}))
    report = check_checkpoint(path)
    assert [(p.name, p.expected, p.found) for p in report.mismatched] == [
        ("layers.3.self_attn.k_proj.weight", (64, 64), (63, 64))]
    assert report.missing == [] and report.unexpected == []
    assert "expected [64, 64], found [63, 64]" in report.format()
    assert ATTN_K in report.format()  # the stored name is shown too


def test_gate_names_an_unexpected_tensor(tmp_path, ckpts):
    extra = "model.language_model.layers.0.linear_attn.extra_proj.weight"
    path = _rewrite(ckpts["fused"], tmp_path / "extra", lambda t: t.update({extra: torch.zeros(2, 3)}))
    report = check_checkpoint(path)
    assert [(p.name, p.found, p.raw_key) for p in report.unexpected] == [
        ("layers.0.linear_attn.extra_proj.weight", (2, 3), extra)]
    assert report.missing == [] and report.mismatched == []
    assert not report.ok


def test_gate_names_every_problem_at_once(tmp_path, ckpts):
    def edit(t):
        t.pop("model.language_model.layers.1.mlp.experts.5.up_proj.weight")
        t.pop("model.visual.blocks.1.attn.proj.bias")
        t["model.language_model.layers.2.linear_attn.conv1d.weight"] = torch.zeros(128, 1, 3)
        t["model.language_model.layers.0.mlp.experts.8.down_proj.weight"] = torch.zeros(64, 32)
        t["vision_tower.foo"] = torch.zeros(1)
        t["model.language_model.norm.weight"] = torch.zeros(64, dtype=torch.int32)

    report = check_checkpoint(_rewrite(ckpts["per_expert"], tmp_path / "all", edit))
    assert {p.name for p in report.missing} == {"layers.1.mlp.experts.5.up_proj.weight",
                                                "visual.blocks.1.attn.proj.bias"}
    assert [(p.name, p.found) for p in report.mismatched] == [("layers.2.linear_attn.conv1d.weight", (128, 1, 3))]
    assert {p.name for p in report.unexpected} == {"layers.0.mlp.experts.8.down_proj.weight", "vision_tower.foo"}
    assert [p.name for p in report.bad_dtype] == ["norm.weight"]
    text = report.format()
    assert "2 missing, 1 wrong shape, 2 unexpected, 1 wrong dtype" in text
    for line in report.problems:
        assert line in text


def test_gate_truncates_long_reports_with_a_count(ckpts):
    config = parse_model_config(tiny_config_dict(num_hidden_layers=12))  # checkpoint has 4 layers
    report = check_checkpoint(ckpts["fused"], config)
    assert len(report.missing) > 100
    text = report.format(max_lines=20)
    assert f"... and {len(report.problems) - 20} more" in text
    assert "the checkpoint holds 4 decoder layers, config.json says num_hidden_layers=12" in text.splitlines()[1]
    assert len(text.splitlines()) <= 25


def test_gate_flags_the_wrong_expert_count(ckpts):
    config = parse_model_config(tiny_config_dict(num_experts=16))
    report = check_checkpoint(ckpts["fused"], config)
    assert ("layers.0.mlp.experts.gate_up_proj", (16, 64, 64), (8, 64, 64)) in [
        (p.name, p.expected, p.found) for p in report.mismatched]
    report = check_checkpoint(ckpts["per_expert"], config)
    assert "layers.0.mlp.experts.15.gate_proj.weight" in {p.name for p in report.missing}


def test_fused_and_per_expert_copies_of_one_layer_are_duplicates(tmp_path, ckpts):
    fused = load_file(str(ckpts["fused"] / "model.safetensors"))
    extra = "model.language_model.layers.0.mlp.experts.0.gate_proj.weight"

    def edit(t):
        t[extra] = fused["model.language_model.layers.0.mlp.experts.gate_up_proj"][0, :32].clone()

    report = check_checkpoint(_rewrite(ckpts["fused"], tmp_path / "dup", edit))
    assert [(p.raw_key, p.note) for p in report.unexpected] == [
        (extra, "second copy; model.language_model.layers.0.mlp.experts.gate_up_proj is used")]


# ---------------------------------------------------------------------------------------------
# clear errors
# ---------------------------------------------------------------------------------------------


def test_directory_without_config_json(tmp_path, ckpts):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(ckpts["fused"] / "model.safetensors", bare / "model.safetensors")
    with pytest.raises(UnsupportedConfigError, match="no config.json"):
        load_text_state_dict(bare)
    with pytest.raises(UnsupportedConfigError, match="no config.json"):
        check_checkpoint(bare)


def test_unsupported_config(tmp_path, ckpts):
    path = tmp_path / "next"
    shutil.copytree(ckpts["fused"], path)
    raw = json.loads((path / "config.json").read_text())
    raw["model_type"] = "qwen3_next"
    (path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(UnsupportedConfigError, match="model_type 'qwen3_next' is not supported"):
        load_text_state_dict(path)


def test_missing_weights_and_missing_shard(tmp_path, ckpts):
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(ckpts["fused"] / "config.json", empty / "config.json")
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_text_state_dict(empty)
    broken = tmp_path / "broken"
    shutil.copytree(ckpts["sharded"], broken)
    (broken / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00003.safetensors"):
        check_checkpoint(broken)
    (broken / "model-00001-of-00003.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(CheckpointError, match="safetensors header"):
        CheckpointReader(broken)


# ---------------------------------------------------------------------------------------------
# agreement with transformers
# ---------------------------------------------------------------------------------------------


def test_expected_shapes_equal_the_transformers_model():
    config_dict = tiny_config_dict(num_hidden_layers=6, layer_types=["linear_attention", "full_attention"] * 3)
    config = parse_model_config(config_dict)
    ours = {"model.language_model." + k if k != "lm_head.weight" else k: v
            for k, v in expected_text_shapes(config.text).items()}
    ours.update({"model." + k: v for k, v in expected_vision_shapes(config.vision).items()})
    assert ours == hf_parameter_shapes(config_dict)


@pytest.mark.parametrize("name", ["fused", "per_expert", "mtp"])
def test_transformers_reads_our_checkpoint_and_agrees_with_our_loader(ckpts, name):
    ours = load_text_state_dict(ckpts[name])
    vision = load_vision_state_dict(ckpts[name])
    hf = load_hf_reference(ckpts[name]).state_dict()
    assert len(hf) == len(ours) + len(vision)
    for key, tensor in ours.items():
        hf_key = key if key == "lm_head.weight" else "model.language_model." + key
        assert torch.equal(hf[hf_key], tensor), key
    for key, tensor in vision.items():
        assert torch.equal(hf["model.visual." + key], tensor), key


@pytest.mark.parametrize("name", ["fused", "text_only"])
def test_transformers_text_model_reads_composite_and_text_only_directories(ckpts, name):
    ours = load_text_state_dict(ckpts[name])
    hf = load_hf_text_reference(ckpts[name]).state_dict()
    assert len(hf) == len(ours)
    for key, tensor in ours.items():
        hf_key = key if key == "lm_head.weight" else "model." + key
        assert torch.equal(hf[hf_key], tensor), key


def test_tiny_weights_have_a_wide_spread(ckpts):
    """Design section 5: larger than transformers' 0.02 so greedy gaps dwarf float noise."""
    state = load_text_state_dict(ckpts["fused"])
    assert state["lm_head.weight"].std() == pytest.approx(2 / math.sqrt(64), rel=0.1)
    assert state["layers.0.mlp.experts.down_proj"].std() == pytest.approx(2 / math.sqrt(32), rel=0.1)
    norm = state["layers.0.input_layernorm.weight"]
    assert 0.02 < norm.std() < 0.3 and norm.abs().mean() < 0.3  # offset (1 + w) norm: w small, not zero
    gated = state["layers.0.linear_attn.norm.weight"]
    assert (gated.mean() - 1).abs() < 0.1  # multiplicative gated norm: w near 1
    decay = state["layers.0.linear_attn.A_log"].exp()
    assert ((decay >= 0.1) & (decay <= 2.0)).all()


def test_published_35b_config_needs_67_gib_of_bf16_weights():
    """Expected shapes at real scale: 40 layers, 256 experts, MTP head; the published shards total ~67 GiB."""
    raw = tiny_config_dict()
    raw["text_config"].update(
        vocab_size=248320, hidden_size=2048, num_hidden_layers=40, num_attention_heads=16, num_key_value_heads=2,
        head_dim=256, num_experts=256, num_experts_per_tok=8, moe_intermediate_size=512,
        shared_expert_intermediate_size=512, linear_num_key_heads=16, linear_num_value_heads=32,
        linear_key_head_dim=128, linear_value_head_dim=128,
        layer_types=["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(40)],
        rope_parameters={"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25,
                         "mrope_section": [11, 11, 10], "mrope_interleaved": True})
    raw["vision_config"].update(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, patch_size=16,
                                num_position_embeddings=2304, out_hidden_size=2048)
    config = parse_model_config(raw)
    counts = [sum(math.prod(s) for s in shapes.values()) for shapes in (
        expected_text_shapes(config.text), expected_vision_shapes(config.vision), expected_mtp_shapes(config.text))]
    assert 34.0e9 < counts[0] < 35.0e9
    assert sum(counts) * 2 / 2**30 == pytest.approx(67.0, abs=0.5)


def test_builder_is_deterministic_and_leaves_the_global_rng_alone(tmp_path):
    torch.manual_seed(0)
    expected_draw = torch.rand(3)
    torch.manual_seed(0)
    first = build_tiny_checkpoint(tmp_path / "one", seed=3)
    assert torch.equal(torch.rand(3), expected_draw)
    second = build_tiny_checkpoint(tmp_path / "two", seed=3)
    other_seed = build_tiny_checkpoint(tmp_path / "three", seed=4)
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert (first / "model.safetensors").read_bytes() != (other_seed / "model.safetensors").read_bytes()
