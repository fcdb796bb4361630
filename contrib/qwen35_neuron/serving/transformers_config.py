"""Qwen3.5 config classes for transformers releases that lack them (4.57, the NxDI route's pin).

vLLM parses ``config.json`` with transformers' ``AutoConfig`` before any model code runs; under
transformers 4.57 ``model_type: qwen3_5_moe`` (and the dense ``qwen3_5``) is unknown there, so
``vllm serve`` stops at parsing. :func:`register_transformers_config` registers the classes below
with ``AutoConfig`` for each model type the installed transformers does not know.

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
DENSE_MODEL_TYPE = "qwen3_5"
DENSE_TEXT_MODEL_TYPE = "qwen3_5_text"
DENSE_VISION_MODEL_TYPE = "qwen3_5_vision"



class Qwen35MoeTextConfig(PretrainedConfig):
    """The MoE language model's fields exactly as config.json's ``text_config`` states them."""

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


class _CompositeConfig(PretrainedConfig):
    """Text and vision sub-configs plus top-level views of the text fields."""

    # Text fields read at the top level of the composite config by vLLM-Neuron 0.5.0
    # (_get_model_configs: num_key_value_heads, head_dim, else hidden_size // num_attention_heads;
    # utils.get_num_layers_from_hf_config: num_hidden_layers) and by callers that expect a flat config.
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
        self.text_config = _sub_config(self.sub_configs["text_config"], text_config)
        self.vision_config = _sub_config(self.sub_configs["vision_config"], vision_config)
        super().__init__(**kwargs)


class Qwen35MoeConfig(_CompositeConfig):
    """``model_type: qwen3_5_moe`` (35B-A3B, 122B-A10B, 397B-A17B)."""

    model_type = COMPOSITE_MODEL_TYPE
    sub_configs = {"text_config": Qwen35MoeTextConfig, "vision_config": Qwen35MoeVisionConfig}

    def __init__(self, text_config: dict | PretrainedConfig | None = None,  # an own __init__: transformers 5
                 vision_config: dict | PretrainedConfig | None = None, **kwargs: Any) -> None:  # generates one
        super().__init__(text_config, vision_config, **kwargs)


class Qwen35TextConfig(PretrainedConfig):
    """The dense language model's fields exactly as config.json's ``text_config`` states them."""

    model_type = DENSE_TEXT_MODEL_TYPE
    base_config_key = "text_config"


class Qwen35VisionConfig(PretrainedConfig):
    model_type = DENSE_VISION_MODEL_TYPE
    base_config_key = "vision_config"


class Qwen35Config(_CompositeConfig):
    """``model_type: qwen3_5`` (the dense 0.8B ... 27B)."""

    model_type = DENSE_MODEL_TYPE
    sub_configs = {"text_config": Qwen35TextConfig, "vision_config": Qwen35VisionConfig}

    def __init__(self, text_config: dict | PretrainedConfig | None = None,
                 vision_config: dict | PretrainedConfig | None = None, **kwargs: Any) -> None:
        super().__init__(text_config, vision_config, **kwargs)


def _sub_config(cls: type[PretrainedConfig], value: dict | PretrainedConfig | None) -> PretrainedConfig:
    if isinstance(value, PretrainedConfig):
        return value
    return cls(**(value or {}))


REGISTRATIONS = ((COMPOSITE_MODEL_TYPE, Qwen35MoeConfig), (TEXT_MODEL_TYPE, Qwen35MoeTextConfig),
                 (DENSE_MODEL_TYPE, Qwen35Config), (DENSE_TEXT_MODEL_TYPE, Qwen35TextConfig))


def register_transformers_config() -> list[str]:
    """Register each class with ``AutoConfig`` whose model type the installed transformers does not know.

    Returns the model types this call registered. Idempotent: a second call finds them registered.
    """
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    added = []
    for model_type, config_class in REGISTRATIONS:
        if model_type not in CONFIG_MAPPING:
            AutoConfig.register(model_type, config_class)
            added.append(model_type)
    return added
