"""Configs of the Qwen3.5 family (MoE and dense), as their config.json files state them (no weights
needed): for capacity reports and for tests that need real shapes.

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


# The dense family (model_type qwen3_5, Qwen3_5ForConditionalGeneration): an MLP of intermediate_size
# per layer, head_dim 256, 1 MTP layer, rope_theta 1e7. Values from public copies of the published
# config.json files (0.8B, 4B, 27B: text and vision read from verbatim copies; 2B: text fields from a
# test of the official file, its vision tower assumed equal to the 4B's; 9B: the model card's sizes
# with the 27B's vision tower). 0.8B / 2B / 4B tie their embeddings, 9B / 27B do not.
def dense(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int, value_heads: int, tied: bool,
          vision: tuple[int, int, int, int]) -> dict:
    """A dense qwen3_5 composite config.json; ``vision`` = (depth, hidden, intermediate, heads)."""
    depth, v_hidden, v_intermediate, v_heads = vision
    return {
        "model_type": "qwen3_5",
        "architectures": ["Qwen3_5ForConditionalGeneration"],
        "tie_word_embeddings": tied,
        "text_config": {
            "model_type": "qwen3_5_text", "vocab_size": 248320, "hidden_size": hidden,
            "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "head_dim": 256, "linear_num_key_heads": 16,
            "linear_num_value_heads": value_heads, "linear_key_head_dim": 128, "linear_value_head_dim": 128,
            "linear_conv_kernel_dim": 4, "full_attention_interval": 4, "tie_word_embeddings": tied,
            "max_position_embeddings": 262144, "mtp_num_hidden_layers": 1,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25,
                                "mrope_section": [11, 11, 10], "mrope_interleaved": True},
        },
        "vision_config": {"depth": depth, "hidden_size": v_hidden, "intermediate_size": v_intermediate,
                          "num_heads": v_heads, "out_hidden_size": hidden, "num_position_embeddings": 2304},
    }


QWEN35_0_8B = dense(1024, 3584, 24, 8, 2, 16, True, (12, 768, 3072, 12))
QWEN35_2B = dense(2048, 6144, 24, 8, 2, 16, True, (24, 1024, 4096, 16))
QWEN35_4B = dense(2560, 9216, 32, 16, 4, 32, True, (24, 1024, 4096, 16))
QWEN35_9B = dense(4096, 12288, 32, 16, 4, 32, False, (27, 1152, 4304, 16))
QWEN35_27B = dense(5120, 17408, 64, 24, 4, 48, False, (27, 1152, 4304, 16))
DENSE_FAMILY = {"0.8B": QWEN35_0_8B, "2B": QWEN35_2B, "4B": QWEN35_4B, "9B": QWEN35_9B, "27B": QWEN35_27B}
