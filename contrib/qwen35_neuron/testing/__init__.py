"""Test support: tiny random Qwen3.5 checkpoints and the Hugging Face reference that reads them."""

from .tiny import (
    TINY_EOS_TOKEN_IDS,
    build_streamed_checkpoint,
    build_tiny_checkpoint,
    default_mrope_section,
    hf_parameter_shapes,
    init_tensor,
    load_hf_reference,
    load_hf_text_reference,
    split_experts,
    text_only_config_dict,
    tiny_config_dict,
    write_safetensors,
)

__all__ = [
    "TINY_EOS_TOKEN_IDS",
    "build_streamed_checkpoint",
    "build_tiny_checkpoint",
    "default_mrope_section",
    "hf_parameter_shapes",
    "init_tensor",
    "load_hf_reference",
    "load_hf_text_reference",
    "split_experts",
    "text_only_config_dict",
    "tiny_config_dict",
    "write_safetensors",
]
