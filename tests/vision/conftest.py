"""Shared tiny vision config and a seeded HF reference tower for the vision tests."""

from __future__ import annotations

import pytest
import torch

from qwen35_neuron.config import VisionConfig

TINY_VISION = dict(
    depth=2, hidden_size=32, intermediate_size=64, num_heads=2, in_channels=3, patch_size=4,
    temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=64, num_position_embeddings=36,
    hidden_act="gelu_pytorch_tanh",
)
WEIGHT_SPREAD = 0.15  # ~7x HF's initializer_range, so outputs are far from the all-equal regime


@pytest.fixture(scope="session")
def tiny_vision_config() -> VisionConfig:
    return VisionConfig(**TINY_VISION)


@pytest.fixture(scope="session")
def hf_vision_tower():
    """transformers' Qwen3_5MoeVisionModel with seeded, widened random weights (fp32, eval)."""
    from transformers.models.qwen3_5_moe.configuration_qwen3_5_moe import Qwen3_5MoeVisionConfig
    from transformers.models.qwen3_5_moe.modeling_qwen3_5_moe import Qwen3_5MoeVisionModel

    torch.manual_seed(1234)
    model = Qwen3_5MoeVisionModel(Qwen3_5MoeVisionConfig(**TINY_VISION)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            centre = 1.0 if name.endswith(("norm1.weight", "norm2.weight", "norm.weight")) else 0.0
            param.copy_(centre + WEIGHT_SPREAD * torch.randn_like(param))
    return model
