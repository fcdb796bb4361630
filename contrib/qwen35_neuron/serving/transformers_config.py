"""Qwen3.5 MoE config classes for transformers releases that lack them (4.57, the NxDI route's pin).

vLLM parses ``config.json`` with transformers' ``AutoConfig`` before any model code runs; under
transformers 4.57 ``model_type: qwen3_5_moe`` is unknown there, so ``vllm serve`` stops at parsing.
:func:`register_transformers_config` registers the classes below with ``AutoConfig`` when (and only
when) the installed transformers has no ``qwen3_5_moe`` of its own.

The composite config keeps the published layout (nested ``text_config`` / ``vision_config``,
``rope_parameters`` with the mRoPE section inside the text config) and adds read-through views of
the text fields that vLLM-Neuron's NxDI loader reads from the top level (``num_key_value_heads``,
``head_dim``, ...): the views are not stored, so ``to_dict()`` and ``save_pretrained`` still write
the published layout. These classes only carry the config; our own parser
(:mod:`qwen35_neuron.config`) stays the one reader of its meaning.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

COMPOSITE_MODEL_TYPE = "qwen3_5_moe"
TEXT_MODEL_TYPE = "qwen3_5_moe_text"
VISION_MODEL_TYPE = "qwen3_5_moe_vision"

# Text fields read at the top level of the composite config by vLLM-Neuron 0.5.0
# (_get_model_configs: num_key_value_heads, head_dim, else hidden_size // num_attention_heads;
# utils.get_num_layers_from_hf_config: num_hidden_layers) and by callers that expect a flat config.
TOP_LEVEL_TEXT_FIELDS = ("num_key_value_heads", "head_dim", "num_attention_heads", "hidden_size",
                         "num_hidden_layers", "vocab_size", "max_position_embeddings")


class Qwen35MoeTextConfig(PretrainedConfig):
    """The language model's fields exactly as config.json's ``text_config`` states them."""

    model_type = TEXT_MODEL_TYPE
    base_config_key = "text_config"


class Qwen35MoeVisionConfig(PretrainedConfig):
    """The vision tower's fields exactly as config.json's ``vision_config`` states them."""

    model_type = VISION_MODEL_TYPE
    base_config_key = "vision_config"


class _TextField:
    """A top-level attribute that reads and writes the text config's field of the same name."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return getattr(instance.text_config, self.name)

    def __set__(self, instance: Any, value: Any) -> None:
        setattr(instance.text_config, self.name, value)


class Qwen35MoeConfig(PretrainedConfig):
    """``model_type: qwen3_5_moe``: text and vision sub-configs plus top-level views of text fields."""

    model_type = COMPOSITE_MODEL_TYPE
    sub_configs = {"text_config": Qwen35MoeTextConfig, "vision_config": Qwen35MoeVisionConfig}

    num_key_value_heads = _TextField()
    head_dim = _TextField()
    num_attention_heads = _TextField()
    hidden_size = _TextField()
    num_hidden_layers = _TextField()
    vocab_size = _TextField()
    max_position_embeddings = _TextField()

    def __init__(self, text_config: dict | PretrainedConfig | None = None,
                 vision_config: dict | PretrainedConfig | None = None, **kwargs: Any) -> None:
        # The sub-configs first: the base constructor may set a top-level view (a flat override).
        self.text_config = _sub_config(Qwen35MoeTextConfig, text_config)
        self.vision_config = _sub_config(Qwen35MoeVisionConfig, vision_config)
        super().__init__(**kwargs)


def _sub_config(cls: type[PretrainedConfig], value: dict | PretrainedConfig | None) -> PretrainedConfig:
    if isinstance(value, PretrainedConfig):
        return value
    return cls(**(value or {}))


def register_transformers_config() -> bool:
    """Register the classes with ``AutoConfig`` unless transformers already knows ``qwen3_5_moe``.

    Returns True when this call registered them. Idempotent: a second call finds them registered.
    """
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if COMPOSITE_MODEL_TYPE in CONFIG_MAPPING:
        return False
    AutoConfig.register(COMPOSITE_MODEL_TYPE, Qwen35MoeConfig)
    if TEXT_MODEL_TYPE not in CONFIG_MAPPING:
        AutoConfig.register(TEXT_MODEL_TYPE, Qwen35MoeTextConfig)
    return True
