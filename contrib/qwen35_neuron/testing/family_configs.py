"""Configs of the Qwen3.5 MoE family, as their config.json files state them (no weights needed):
for capacity reports and for tests that need real shapes.

35B-A3B: the published config. 122B-A10B and 397B-A17B: public config facts gathered from
third-party copies of their config.json (48 layers / hidden 3072 / 32 q heads / 2 KV heads /
64 DeltaNet value heads / expert size 1024; and 60 layers / hidden 4096 / 32 q heads / 2 KV heads /
512 experts top-10 / expert size 1024); check them against the real files before relying on them.
"""

from __future__ import annotations

import copy

QWEN35_35B = {
    "model_type": "qwen3_5_moe",
    "architectures": ["Qwen3_5MoeForConditionalGeneration"],
    "text_config": {
        "vocab_size": 248320, "hidden_size": 2048, "num_hidden_layers": 40, "num_attention_heads": 16,
        "num_key_value_heads": 2, "head_dim": 256, "num_experts": 256, "num_experts_per_tok": 8,
        "moe_intermediate_size": 512, "shared_expert_intermediate_size": 512, "linear_num_key_heads": 16,
        "linear_num_value_heads": 32, "linear_key_head_dim": 128, "linear_value_head_dim": 128,
        "linear_conv_kernel_dim": 4, "full_attention_interval": 4, "tie_word_embeddings": False,
        "max_position_embeddings": 262144,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25,
                            "mrope_section": [11, 11, 10], "mrope_interleaved": True},
    },
    "vision_config": {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16,
                      "out_hidden_size": 2048, "num_position_embeddings": 2304},
}


def sibling(**text_overrides) -> dict:
    """The 35B config with some text fields changed (text-only: no vision tower)."""
    raw = copy.deepcopy(QWEN35_35B["text_config"])
    raw.update(text_overrides)
    raw["model_type"] = "qwen3_5_moe_text"
    return raw


QWEN35_122B = sibling(hidden_size=3072, num_hidden_layers=48, num_attention_heads=32, linear_num_value_heads=64,
                      moe_intermediate_size=1024, shared_expert_intermediate_size=1024)
QWEN35_397B = sibling(hidden_size=4096, num_hidden_layers=60, num_attention_heads=32, linear_num_value_heads=64,
                      num_experts=512, num_experts_per_tok=10, moe_intermediate_size=1024,
                      shared_expert_intermediate_size=1024)
