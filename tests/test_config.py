"""Parsing config.json (composite and text-only) into ModelConfig, and its errors."""

from __future__ import annotations

import copy
import json
import re

import pytest

from qwen35_neuron.config import (
    FULL_ATTENTION,
    LINEAR_ATTENTION,
    ModelConfig,
    load_model_config,
    parse_model_config,
)
from qwen35_neuron.errors import UnsupportedConfigError
from qwen35_neuron.testing import text_only_config_dict, tiny_config_dict

L, F = LINEAR_ATTENTION, FULL_ATTENTION


def test_composite_config():
    config = parse_model_config(tiny_config_dict())
    assert isinstance(config, ModelConfig) and config.model_type == "qwen3_5_moe" and config.is_multimodal
    text = config.text
    assert text.layer_types == (L, L, L, F)
    assert text.linear_layer_ids == (0, 1, 2) and text.full_attention_layer_ids == (3,)
    assert (text.vocab_size, text.hidden_size, text.num_hidden_layers) == (256, 64, 4)
    assert (text.num_attention_heads, text.num_key_value_heads, text.head_dim) == (4, 2, 32)
    assert text.rotary_dim == 8 and text.mrope_section == (2, 1, 1)
    assert text.rope_theta == 1e7 and text.partial_rotary_factor == 0.25
    assert (text.linear_key_dim, text.linear_value_dim, text.linear_conv_dim) == (32, 64, 128)
    assert (text.num_experts, text.num_experts_per_tok, text.moe_intermediate_size) == (8, 2, 32)
    assert text.shared_expert_intermediate_size == 32 and text.tie_word_embeddings is False
    assert text.eos_token_ids == (254, 255)
    vision = config.vision
    assert (vision.depth, vision.hidden_size, vision.num_heads, vision.patch_size) == (2, 32, 2, 4)
    assert vision.out_hidden_size == 64 and vision.spatial_merge_size == 2
    assert (config.image_token_id, config.video_token_id) == (250, 251)
    assert config.architectures == ("Qwen3_5MoeForConditionalGeneration",)


def test_text_only_config():
    config = parse_model_config(text_only_config_dict(tiny_config_dict()))
    assert config.model_type == "qwen3_5_moe_text"
    assert config.vision is None and not config.is_multimodal
    assert config.text == parse_model_config(tiny_config_dict()).text


def test_layer_types_from_list_or_interval():
    explicit = tiny_config_dict(num_hidden_layers=6, layer_types=[L, F, L, F, L, F])
    assert parse_model_config(explicit).text.layer_types == (L, F, L, F, L, F)
    derived = tiny_config_dict(num_hidden_layers=6)
    del derived["text_config"]["layer_types"]
    derived["text_config"]["full_attention_interval"] = 3
    assert parse_model_config(derived).text.layer_types == (L, L, F, L, L, F)
    default = copy.deepcopy(derived)
    del default["text_config"]["full_attention_interval"]  # Qwen3.5's default: every 4th layer
    assert parse_model_config(default).text.layer_types == (L, L, L, F, L, L)


def test_legacy_rope_fields_are_read():
    raw = tiny_config_dict()
    text = raw["text_config"]
    del text["rope_parameters"]
    text.update(rope_theta=5e6, partial_rotary_factor=0.5,
                rope_scaling={"type": "mrope", "mrope_section": [4, 2, 2], "mrope_interleaved": True})
    parsed = parse_model_config(raw).text
    assert (parsed.rope_theta, parsed.rotary_dim, parsed.mrope_section) == (5e6, 16, (4, 2, 2))


@pytest.mark.parametrize("edit, message", [
    (lambda raw: raw.update(model_type="qwen3_next"), "model_type 'qwen3_next' is not supported"),
    (lambda raw: raw.update(model_type=None), "model_type None is not supported"),
    (lambda raw: raw["text_config"].update(hidden_act="gelu"), "hidden_act 'gelu' is not supported"),
    (lambda raw: raw["text_config"].update(layer_types=[L, L, F]), "layer_types has 3 entries but num_hidden_layers is 4"),
    (lambda raw: raw["text_config"].update(layer_types=[L, L, L, "sliding_attention"]), "unsupported layer types"),
    (lambda raw: raw["text_config"].update(num_key_value_heads=3), "not a multiple of num_key_value_heads"),
    (lambda raw: raw["text_config"].update(num_experts_per_tok=9), "num_experts_per_tok 9"),
    (lambda raw: raw["text_config"].update(attention_bias=True), "attention_bias"),
    (lambda raw: raw["text_config"]["rope_parameters"].update(mrope_interleaved=False), "mrope_interleaved"),
    # a string is refused, never read as true (README: booleans are JSON true/false)
    (lambda raw: raw["text_config"]["rope_parameters"].update(mrope_interleaved="false"),
     "rope_parameters field 'mrope_interleaved' must be true or false"),
    (lambda raw: raw["text_config"]["rope_parameters"].update(rope_type="yarn"), "rope_type 'yarn'"),
    (lambda raw: raw["text_config"].pop("num_experts"), r"lacks required fields \['num_experts'\]"),
])
def test_unsupported_configs_raise_clear_errors(edit, message):
    raw = tiny_config_dict()
    edit(raw)
    with pytest.raises(UnsupportedConfigError, match=message):
        parse_model_config(raw)


def _write(directory, config: dict, generation: dict | None = None):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    if generation is not None:
        (directory / "generation_config.json").write_text(json.dumps(generation))
    return directory


def test_eos_ids_come_from_generation_config(tmp_path):
    raw = tiny_config_dict()
    assert load_model_config(_write(tmp_path / "a", raw, {"eos_token_id": [7, 8]})).text.eos_token_ids == (7, 8)
    assert load_model_config(_write(tmp_path / "b", raw, {"eos_token_id": 5})).text.eos_token_ids == (5,)
    # no generation_config.json: config.json's own eos ids
    assert load_model_config(_write(tmp_path / "c", raw)).text.eos_token_ids == (254, 255)
    # generation_config.json without eos: config.json's
    assert load_model_config(_write(tmp_path / "d", raw, {"do_sample": False})).text.eos_token_ids == (254, 255)
    # neither: Qwen3.5's <|im_end|> and <|endoftext|>
    del raw["text_config"]["eos_token_id"]
    assert load_model_config(_write(tmp_path / "e", raw)).text.eos_token_ids == (248046, 248044)


def test_missing_directory_config_or_bad_json(tmp_path):
    with pytest.raises(UnsupportedConfigError, match="does not exist"):
        load_model_config(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnsupportedConfigError, match="no config.json"):
        load_model_config(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(UnsupportedConfigError, match="not valid JSON"):
        load_model_config(bad)
    good = _write(tmp_path / "good", tiny_config_dict())
    (good / "generation_config.json").write_text("{oops")
    with pytest.raises(UnsupportedConfigError, match="not valid JSON"):
        load_model_config(good)


def test_configs_are_frozen():
    config = parse_model_config(tiny_config_dict())
    with pytest.raises(AttributeError):
        config.text.hidden_size = 128  # type: ignore[misc]


@pytest.mark.parametrize("change, message", [
    (lambda c: c["text_config"].update(full_attention_interval=0, layer_types=None), "'full_attention_interval' must be >= 1"),
    (lambda c: c["text_config"].update(num_experts_per_tok="x"), "'num_experts_per_tok' must be an integer"),
    (lambda c: c.update(text_config=[1]), "'text_config' must be a JSON object"),
    (lambda c: c["vision_config"].update(depth=None, hidden_size="32"), "'hidden_size' must be an integer"),
    (lambda c: c["text_config"].update(vocab_size=0), "'vocab_size' must be >= 1"),
    (lambda c: c["text_config"].update(hidden_size=-1), "'hidden_size' must be >= 1"),
    (lambda c: c["text_config"].update(head_dim=0), "'head_dim' must be >= 1"),
    (lambda c: c["text_config"].update(rms_norm_eps="tiny"), "malformed field"),
])
def test_malformed_fields_are_named(change, message):
    raw = tiny_config_dict()
    change(raw)
    if raw.get("text_config") and isinstance(raw["text_config"], dict) and raw["text_config"].get("layer_types") is None:
        raw["text_config"].pop("layer_types", None)
    with pytest.raises(UnsupportedConfigError, match=message):
        parse_model_config(raw)


def test_a_non_object_config_is_an_error():
    with pytest.raises(UnsupportedConfigError, match="JSON object"):
        parse_model_config([1, 2])


@pytest.mark.parametrize("change, message", [
    (lambda c: c["text_config"].update(rms_norm_eps=0), "'rms_norm_eps' must be a finite number > 0, got 0"),
    (lambda c: c["text_config"].update(rms_norm_eps=-1e-6), "'rms_norm_eps' must be a finite number > 0"),
    (lambda c: c["text_config"].update(rms_norm_eps=float("nan")), "'rms_norm_eps' must be a finite number"),
    (lambda c: c["text_config"]["rope_parameters"].update(rope_theta=0), "'rope_theta' must be a finite number > 0"),
    (lambda c: c["text_config"]["rope_parameters"].update(rope_theta=-1e7), "'rope_theta' must be"),
    (lambda c: c["text_config"]["rope_parameters"].update(rope_theta=float("inf")), "'rope_theta' must be"),
    (lambda c: c["text_config"]["rope_parameters"].update(partial_rotary_factor=0), "'partial_rotary_factor' must be"),
    (lambda c: c["text_config"]["rope_parameters"].update(partial_rotary_factor=1.5), "'partial_rotary_factor' must be"),
    (lambda c: c["text_config"]["rope_parameters"].update(mrope_section=[2, -1, 1]), "'mrope_section' must be"),
    (lambda c: c["text_config"].update(rope_parameters="default"), "'rope_parameters' must be a JSON object"),
    (lambda c: c.update(tie_word_embeddings="false"), "'tie_word_embeddings' must be true or false"),
    (lambda c: c["text_config"].update(pad_token_id=-1), "'pad_token_id' must be >= 0"),
    (lambda c: c["text_config"].update(eos_token_id="x"), "'eos_token_id' must be an integer"),
    (lambda c: c["text_config"].update(num_experts=0), "'num_experts' must be >= 1"),
    (lambda c: c["text_config"].update(moe_intermediate_size=-2), "'moe_intermediate_size' must be >= 1"),
    (lambda c: c["text_config"].update(layer_types="linear_attention"), "'layer_types' must be a list"),
    (lambda c: c["vision_config"].update(layer_norm_eps=0), "'layer_norm_eps' must be a finite number > 0"),
    (lambda c: c["vision_config"].update(num_heads=3), "hidden_size 32 is not a multiple of num_heads 3"),
    (lambda c: c["vision_config"].update(rope_parameters={"rope_theta": -5}), "'rope_theta' must be"),
    (lambda c: c.update(image_token_id=-3), "'image_token_id' must be >= 0"),
])
def test_nonsensical_values_are_refused_with_the_field_name(change, message):
    raw = tiny_config_dict()
    change(raw)
    with pytest.raises(UnsupportedConfigError, match=re.escape(message)):
        parse_model_config(raw)


def test_bad_companion_files_are_named(tmp_path):
    good = _write(tmp_path / "good", tiny_config_dict())
    (good / "generation_config.json").write_text(json.dumps({"eos_token_id": ["end"]}))
    with pytest.raises(UnsupportedConfigError, match="generation_config.json field 'eos_token_id' must be"):
        load_model_config(good)
    (good / "generation_config.json").write_text("[1, 2]")
    with pytest.raises(UnsupportedConfigError, match="must hold a JSON object"):
        load_model_config(good)
    (good / "generation_config.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(UnsupportedConfigError, match="not valid JSON"):
        load_model_config(good)


@pytest.mark.parametrize("raw, message", [
    ({"patch_size": 0}, "'patch_size' must be >= 1"),
    ({"min_pixels": "many"}, "'min_pixels' must be an integer"),
    ({"image_std": [0.5, 0.0, 0.5]}, "'image_std' must be a list of 3 finite positive numbers"),
    ({"image_mean": [0.5]}, "'image_mean' must be a list of 3 finite numbers"),
    ({"rescale_factor": 0}, "'rescale_factor' must be a finite number > 0"),
    ({"do_resize": "no"}, "'do_resize' must be true or false"),
    ({"size": {"shortest_edge": 100, "longest_edge": 10}}, "min_pixels 100 exceeds max_pixels 10"),
    ({"size": [1, 2]}, "'size' must be a JSON object"),
])
def test_preprocessor_config_values_are_checked(raw, message):
    from qwen35_neuron.vision.preprocess import parse_image_processor_config

    with pytest.raises(UnsupportedConfigError, match=re.escape(message)):
        parse_image_processor_config(raw)
