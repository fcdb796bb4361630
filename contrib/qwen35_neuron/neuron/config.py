"""NxDI config classes for Qwen3.5 MoE: the model description is parsed by us, not by AutoConfig.

NxDI pins transformers 4.57, which cannot read Qwen3.5 configs, so ``load_pretrained_config``
fails there. :func:`load_qwen35_config` reads config.json with :mod:`qwen35_neuron.config` and sets
flat attributes (``config.neuron_settings.text_attributes``); the run settings travel as the
``qwen35_settings`` dict. Both are plain JSON, so ``neuron_config.json`` in a compiled directory
reloads the same config (with ``MoENeuronConfig`` as its neuron config).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from typing import Callable

from neuronx_distributed_inference.models.config import InferenceConfig, MoENeuronConfig

from ..config import TextConfig, load_model_config
from ..config.neuron_settings import (
    TEXT_ATTRIBUTES,
    NeuronSettings,
    neuron_config_kwargs,
    text_attributes,
    text_from_attributes,
)
from ..errors import UnsupportedConfigError
from ..parallel.sharding import check_tp_supported

logger = logging.getLogger(__name__)

SETTINGS_ATTRIBUTE = "qwen35_settings"


def load_qwen35_config(model_dir: str | os.PathLike) -> Callable[[InferenceConfig], None]:
    """A ``load_config`` hook that fills an InferenceConfig from ``<model_dir>/config.json``."""
    model_dir = os.path.abspath(os.fspath(model_dir))

    def load_config(config: InferenceConfig) -> None:
        model = load_model_config(model_dir)
        for name, value in text_attributes(model.text).items():
            setattr(config, name, value)
        config._name_or_path = model_dir  # where checkpoint_loader_fn finds the weights after a reload
        config.architectures = list(model.architectures)

    load_config.qwen35_model_dir = model_dir
    return load_config


def _model_dir_of_hook(hook: Callable) -> str | None:
    """The checkpoint directory a foreign ``load_config`` hook closes over, if any (vLLM-Neuron passes
    NxDI's ``load_pretrained_config(path)``, which AutoConfig of transformers 4.57 cannot serve)."""
    for cell in getattr(hook, "__closure__", None) or ():
        value = cell.cell_contents
        if isinstance(value, (str, os.PathLike)) and os.path.isfile(os.path.join(os.fspath(value), "config.json")):
            return os.fspath(value)
    return None


def _our_hook(hook: Callable | None) -> Callable | None:
    if hook is None or hasattr(hook, "qwen35_model_dir"):
        return hook
    model_dir = _model_dir_of_hook(hook)
    if model_dir is None:
        return hook
    logger.info("qwen35_neuron: reading %s/config.json with our parser instead of AutoConfig", model_dir)
    return load_qwen35_config(model_dir)


class Qwen35MoeInferenceConfig(InferenceConfig):
    """InferenceConfig of Qwen3.5 MoE; ``text()`` and ``settings()`` rebuild our own dataclasses."""

    def __init__(self, neuron_config, fused_spec_config=None, load_config=None, metadata=None, **kwargs) -> None:
        super().__init__(neuron_config, fused_spec_config=fused_spec_config, load_config=_our_hook(load_config),
                         metadata=metadata, **kwargs)

    def get_required_attributes(self) -> list[str]:
        return list(TEXT_ATTRIBUTES)

    @classmethod
    def get_neuron_config_cls(cls):
        return MoENeuronConfig

    def text(self) -> TextConfig:
        return text_from_attributes(self)

    def settings(self) -> NeuronSettings:
        """The run settings this config was built with (defaults when built by a foreign caller)."""
        raw = dict(getattr(self, SETTINGS_ATTRIBUTE, None) or {})
        nc = self.neuron_config
        raw.setdefault("tp_degree", nc.tp_degree)
        raw.setdefault("lnc", nc.logical_nc_config)
        raw.setdefault("batch_size", nc.max_batch_size)
        raw.setdefault("ctx_batch_size", nc.ctx_batch_size)
        raw.setdefault("dtype", str(nc.torch_dtype).rsplit(".", 1)[-1])
        raw.setdefault("on_device_sampling", nc.on_device_sampling_config is not None)
        raw.setdefault("output_logits", nc.output_logits)
        raw.setdefault("max_length", nc.max_length)
        raw.setdefault("context_buckets", tuple(nc.context_encoding_buckets or [nc.max_context_length]))
        raw.setdefault("token_buckets", tuple(nc.token_generation_buckets or [nc.max_length]))
        return NeuronSettings(**raw)


def inference_config(model_dir: str | os.PathLike, settings: NeuronSettings) -> Qwen35MoeInferenceConfig:
    """The config to construct :class:`~qwen35_neuron.neuron.model.Qwen35MoeForCausalLM` with.

    Fails before anything is built when the TP degree cannot shard this model.
    """
    text = load_model_config(model_dir).text
    check_tp_supported(text, settings.tp_degree)
    if settings.max_length > text.max_position_embeddings:
        raise UnsupportedConfigError(f"max_length {settings.max_length} exceeds the model's max_position_embeddings "
                                     f"{text.max_position_embeddings}")
    neuron_config = MoENeuronConfig(**neuron_config_kwargs(settings))
    return Qwen35MoeInferenceConfig(neuron_config, load_config=load_qwen35_config(model_dir),
                                    **{SETTINGS_ATTRIBUTE: asdict(settings)})
