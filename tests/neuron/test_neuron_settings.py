"""Neuron run settings: presets, validation, and the MoENeuronConfig keywords against the manifest."""

from __future__ import annotations

import json

import pytest

from qwen35_neuron.testing.family_configs import QWEN35_122B, QWEN35_397B
from qwen35_neuron.analysis.manifest_check import load_manifest
from qwen35_neuron.config import parse_model_config
from qwen35_neuron.config.neuron_settings import (
    DEFAULT_PRESET_FOR,
    PRESETS,
    NeuronSettings,
    neuron_config_kwargs,
    preset,
    text_attributes,
    text_from_attributes,
)
from qwen35_neuron.errors import UnsupportedConfigError
from qwen35_neuron.config.tp_shapes import check_tp_supported

MOE_CONFIG = "neuronx_distributed_inference.models.config.MoENeuronConfig"


@pytest.mark.parametrize("settings", [
    preset("trn2.3xlarge"),
    preset("trn2.48xlarge", batch_size=8, ctx_batch_size=1, on_device_sampling=True, output_logits=True),
    preset("trn2.48xlarge-tp16", moe_backend="nxd"),
])
def test_every_keyword_exists_at_the_pinned_release(settings):
    spec = load_manifest().symbols[MOE_CONFIG]
    kwargs = neuron_config_kwargs(settings)
    unknown = [k for k in kwargs if k not in spec.keyword_names]
    assert unknown == []
    for key, value in kwargs.items():
        if isinstance(value, dict) and key in spec.dict_params:
            assert set(value) <= set(spec.dict_params[key]), key
    json.dumps(kwargs)  # saved in neuron_config.json


def test_kwargs_encode_the_settings():
    kwargs = neuron_config_kwargs(preset("trn2.48xlarge", batch_size=4, ctx_batch_size=1, max_length=8192))
    assert (kwargs["tp_degree"], kwargs["logical_nc_config"], kwargs["moe_tp_degree"]) == (8, 2, 8)
    assert (kwargs["ctx_batch_size"], kwargs["tkg_batch_size"], kwargs["kv_cache_batch_size"]) == (1, 4, 4)
    assert kwargs["context_encoding_buckets"] == [128, 512, 2048]
    assert kwargs["token_generation_buckets"] == [512, 1024, 2048, 4096, 8192]  # doubling up to max_length
    chosen = neuron_config_kwargs(preset("trn2.3xlarge", token_buckets=(4096, 1024), max_length=4096))
    assert chosen["token_generation_buckets"] == [1024, 4096]
    assert kwargs["max_context_length"] == 2048 and kwargs["padding_side"] == "right"
    assert "on_device_sampling_config" not in kwargs and "blockwise_matmul_config" not in kwargs


@pytest.mark.parametrize("changes, message", [
    ({"context_buckets": (128, 8192)}, "exceeds max_length"),
    ({"lnc": 3}, "lnc"),
    ({"moe_backend": "megablocks"}, "moe_backend"),
    ({"deltanet_kernel": "nkilib", "context_buckets": (100,)}, "multiples of 64"),
    ({"output_logits": True}, "on_device_sampling"),
    ({"ctx_batch_size": 2}, "ctx_batch_size"),
    ({"context_buckets": (1,)}, ">= 2"),
    ({"token_buckets": (512, 2048)}, "largest is max_length"),
    ({"token_buckets": ()}, "token_buckets"),
])
def test_bad_settings_name_the_problem(changes, message):
    with pytest.raises(UnsupportedConfigError, match=message):
        NeuronSettings(**changes)


def test_presets_shard_the_family(config_35b):
    models = {"35B-A3B": config_35b.text, "122B-A10B": parse_model_config(QWEN35_122B).text,
              "397B-A17B": parse_model_config(QWEN35_397B).text}
    for name, text in models.items():
        check_tp_supported(text, PRESETS[DEFAULT_PRESET_FOR[name]].tp_degree)
    for name in ("trn2.3xlarge", "trn2.48xlarge", "trn2.48xlarge-tp16"):
        check_tp_supported(config_35b.text, PRESETS[name].tp_degree)
    with pytest.raises(UnsupportedConfigError, match="num_attention_heads"):
        check_tp_supported(config_35b.text, PRESETS["trn2.48xlarge-tp32"].tp_degree)
    assert parse_model_config(QWEN35_397B).text.num_experts == 512


def test_text_attributes_round_trip_through_json(config_35b):
    flat = json.loads(json.dumps(text_attributes(config_35b.text)))
    assert text_from_attributes(flat) == config_35b.text
    assert flat["num_local_experts"] == 256 and flat["intermediate_size"] == 512 and flat["n_shared_experts"] == 0
    assert flat["layer_types"][3] == "full_attention" and flat["mrope_section"] == [11, 11, 10]


def test_speculation_settings_are_checked():
    with pytest.raises(UnsupportedConfigError, match="num_speculative_tokens must be in 0..3"):
        NeuronSettings(num_speculative_tokens=4)
    with pytest.raises(UnsupportedConfigError, match="equals the verify graph's length"):
        NeuronSettings(num_speculative_tokens=3, context_buckets=(4, 128), max_length=256)
    for sampling in ({"on_device_sampling": True}, {"on_device_sampling": True, "output_logits": True}):
        with pytest.raises(UnsupportedConfigError, match="greedy and returns tokens only"):
            NeuronSettings(num_speculative_tokens=1, **sampling)
    with pytest.raises(UnsupportedConfigError, match="no room for verify steps"):
        NeuronSettings(num_speculative_tokens=3, context_buckets=(2,), max_length=4, token_buckets=(4,))
    assert neuron_config_kwargs(NeuronSettings(num_speculative_tokens=2))["speculation_length"] == 3
    assert neuron_config_kwargs(NeuronSettings())["speculation_length"] == 0
