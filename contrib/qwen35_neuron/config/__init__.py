"""Configuration: the HF model description and the Neuron/CPU run settings."""

from .hf_config import (
    FULL_ATTENTION,
    LINEAR_ATTENTION,
    ModelConfig,
    TextConfig,
    VisionConfig,
    load_model_config,
    parse_model_config,
)
from .run_config import Backend, RunConfig

__all__ = [
    "FULL_ATTENTION",
    "LINEAR_ATTENTION",
    "Backend",
    "ModelConfig",
    "RunConfig",
    "TextConfig",
    "VisionConfig",
    "load_model_config",
    "parse_model_config",
]
