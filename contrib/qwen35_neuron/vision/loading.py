"""The vision tower with a checkpoint's weights: one loader for the CPU runner and for compiling."""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint.loader import load_vision_state_dict
from ..config import ModelConfig
from ..errors import UnsupportedConfigError
from .tower import VisionTower


def load_vision_tower(model_dir: str | Path, config: ModelConfig, dtype: torch.dtype = torch.float32) -> VisionTower:
    """The eager tower with the checkpoint's vision weights (checked by the tensor gate), read in ``dtype``
    (no fp32 copy of a bf16 tower), eval mode."""
    if config.vision is None:
        raise UnsupportedConfigError(
            f"{model_dir} has no vision_config: images need a Qwen3.5 vision-language checkpoint "
            "(architecture Qwen3_5MoeForConditionalGeneration or Qwen3_5ForConditionalGeneration)"
        )
    with torch.device("meta"):  # nothing allocated: the weights are assigned as read, in ``dtype``
        tower = VisionTower(config.vision)
    tower.load_state_dict(load_vision_state_dict(model_dir, config, dtype=dtype), strict=True, assign=True)
    return tower.requires_grad_(False).eval()
