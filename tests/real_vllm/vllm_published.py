"""Qwen3.5-35B-A3B's config.json as published (model card values; no weights): the composite layout
vLLM parses, with nested text_config / vision_config and mRoPE inside rope_parameters."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from qwen35_neuron.testing.family_configs import QWEN35_27B, QWEN35_35B


def layer_types(layers: int) -> list[str]:
    return ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(layers)]


def qwen35_35b_config_json() -> dict:
    raw = copy.deepcopy(QWEN35_35B)
    raw.update({"image_token_id": 248056, "video_token_id": 248057, "vision_start_token_id": 248053,
                "vision_end_token_id": 248054, "tie_word_embeddings": False, "transformers_version": "4.57.1"})
    raw["text_config"].update({
        "model_type": "qwen3_5_moe_text", "dtype": "bfloat16", "layer_types": layer_types(40), "hidden_act": "silu",
        "attention_bias": False, "attention_dropout": 0.0, "attn_output_gate": True, "bos_token_id": 248044,
        "eos_token_id": 248044, "initializer_range": 0.02, "mamba_ssm_dtype": "float32", "mtp_num_hidden_layers": 1,
        "mtp_use_dedicated_embeddings": False, "output_router_logits": False, "router_aux_loss_coef": 0.001,
        "pad_token_id": None, "partial_rotary_factor": 0.25, "rms_norm_eps": 1e-06, "use_cache": True})
    raw["vision_config"].update({"model_type": "qwen3_5_moe", "deepstack_visual_indexes": [],
                                 "hidden_act": "gelu_pytorch_tanh", "in_channels": 3, "initializer_range": 0.02,
                                 "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2})
    return raw


def qwen35_27b_config_json() -> dict:
    """The dense 27B (``qwen3_5``), as published."""
    raw = copy.deepcopy(QWEN35_27B)
    raw.update({"image_token_id": 248056, "video_token_id": 248057, "vision_start_token_id": 248053,
                "vision_end_token_id": 248054, "language_model_only": False, "transformers_version": "4.57.1"})
    raw["text_config"].update({"dtype": "bfloat16", "layer_types": layer_types(64), "attn_output_gate": True,
                               "hidden_act": "silu", "eos_token_id": 248044, "mamba_ssm_dtype": "float32"})
    raw["vision_config"].update({"model_type": "qwen3_5", "hidden_act": "gelu_pytorch_tanh", "patch_size": 16,
                                 "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3})
    return raw


def write_config(directory: Path, raw: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(raw, indent=2))
    return directory
