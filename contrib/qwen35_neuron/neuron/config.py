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
    SERVING_OVERRIDE_KEY,
    TEXT_ATTRIBUTES,
    NeuronSettings,
    check_settings_fit_model,
    neuron_config_kwargs,
    default_token_buckets,
    serving_overrides,
    text_attributes,
    text_from_attributes,
)
from ..errors import UnsupportedConfigError

logger = logging.getLogger(__name__)

SETTINGS_ATTRIBUTE = "qwen35_settings"
# composite HF sub-configs a foreign hook leaves on the config (our parser reads their fields flat)
NESTED_HF_CONFIGS = ("text_config", "vision_config")
# NxDI modes vLLM-Neuron can ask for that need a paged KV cache and per-chunk state carry; our model keeps each
# request's KV and DeltaNet state in one contiguous row (seq_ids).
UNSUPPORTED_SERVING_MODES = {
    "is_prefix_caching": "prefix caching cannot carry Qwen3.5's DeltaNet state (wrong tokens): serve with "
                         "--no-enable-prefix-caching",
    "is_chunked_prefill": "chunked prefill is not supported for Qwen3.5 on NxDI: keep vLLM-Neuron's scheduler "
                          "(unset DISABLE_NEURON_CUSTOM_SCHEDULER)",
    "is_block_kv_layout": "a block KV layout is not supported for Qwen3.5 on NxDI: serve with "
                          "--no-enable-prefix-caching and vLLM-Neuron's scheduler",
}
# NxDI keywords our model needs that NxDI's defaults get wrong for it, filled in when a caller (vLLM-Neuron)
# does not pass them: MoE weights sharded over all TP ranks, an fp32 softmax router.
NEURON_CONFIG_DEFAULTS = {"moe_ep_degree": 1, "router_config": {"act_fn": "softmax", "dtype": "float32"}}
# Hugging Face PretrainedConfig fields NxDI's host code reads from the config when a caller passes none
# (``NeuronBaseForCausalLM._setup_func_config``: output_attentions / output_hidden_states; the HF
# adapter builds a PretrainedConfig from ours). AutoConfig would bring them; our parser does not.
HF_GENERIC_DEFAULTS = {"output_attentions": False, "output_hidden_states": False, "return_dict": True}


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


def _our_hook(hook: Callable | None) -> Callable | None:
    """Our hook as it is; any other one is run first and then completed by our parser.

    vLLM-Neuron passes NxDI's ``load_pretrained_config(path)``: it fills the config from transformers'
    ``AutoConfig`` (our :mod:`qwen35_neuron.serving.transformers_config` classes under transformers
    4.57), including ``_name_or_path``, the checkpoint directory. Its nested sub-configs are dropped
    and the flat attributes come from that directory's config.json through our own parser, exactly
    as in :func:`load_qwen35_config`.
    """
    if hook is None or hasattr(hook, "qwen35_model_dir"):
        return hook

    def load_config(config: InferenceConfig) -> None:
        hook(config)
        model_dir = getattr(config, "_name_or_path", None)
        if not model_dir or not os.path.isfile(os.path.join(os.fspath(model_dir), "config.json")):
            raise UnsupportedConfigError(
                f"the config loader gave checkpoint {model_dir!r}, which is not a local directory with a "
                "config.json: Qwen3.5 on NxDI reads the checkpoint from disk (pass the model directory)")
        for nested in NESTED_HF_CONFIGS:
            config.__dict__.pop(nested, None)
        load_qwen35_config(model_dir)(config)

    return load_config


class Qwen35MoeNeuronConfig(MoENeuronConfig):
    """NxDI's MoE neuron config, plus our run settings that NxDI has no keyword for.

    vLLM-Neuron builds the neuron config from vLLM's arguments and ``override_neuron_config``; the
    ``qwen35`` entry of the latter (kernels, MoE form, ...: ``SERVING_OVERRIDE_FIELDS``) is checked
    and kept here, so it reaches :meth:`Qwen35MoeInferenceConfig.settings` and is saved with the
    compiled model. Keywords our model needs and NxDI defaults differently get our values when the
    caller passes none (``moe_tp_degree`` = TP, our token-generation buckets).
    """

    def __init__(self, **kwargs) -> None:
        self.qwen35 = serving_overrides(kwargs.pop(SERVING_OVERRIDE_KEY, None))
        tp_degree = kwargs.get("tp_degree", 1)
        kwargs.setdefault("moe_tp_degree", tp_degree)
        kwargs.setdefault("token_generation_buckets",
                          list(default_token_buckets(kwargs.get("max_length", kwargs.get("seq_len", 128)))))
        for name, value in NEURON_CONFIG_DEFAULTS.items():
            kwargs.setdefault(name, value)
        super().__init__(**kwargs)


class Qwen35MoeInferenceConfig(InferenceConfig):
    """InferenceConfig of Qwen3.5 MoE; ``text()`` and ``settings()`` rebuild our own dataclasses."""

    def __init__(self, neuron_config, fused_spec_config=None, load_config=None, metadata=None, **kwargs) -> None:
        super().__init__(neuron_config, fused_spec_config=fused_spec_config, load_config=_our_hook(load_config),
                         metadata=metadata, **kwargs)

    def add_derived_config(self) -> None:
        """NxDI's derived fields, plus the generic HF fields its host code reads (also after a reload)."""
        super().add_derived_config()
        for name, value in HF_GENERIC_DEFAULTS.items():
            if not hasattr(self, name):
                setattr(self, name, value)

    def get_required_attributes(self) -> list[str]:
        return list(TEXT_ATTRIBUTES)

    def validate_config(self) -> None:
        """NxDI's checks, then the serving modes our state layout cannot take (one line each, with the fix)."""
        super().validate_config()
        nc = self.neuron_config
        for flag, problem in UNSUPPORTED_SERVING_MODES.items():
            if getattr(nc, flag, False):
                raise UnsupportedConfigError(problem)

    @classmethod
    def get_neuron_config_cls(cls):
        return Qwen35MoeNeuronConfig

    def text(self) -> TextConfig:
        return text_from_attributes(self)

    def settings(self) -> NeuronSettings:
        """The run settings this config was built with (defaults when built by a foreign caller)."""
        nc = self.neuron_config
        raw = {**getattr(nc, SERVING_OVERRIDE_KEY, {}), **(getattr(self, SETTINGS_ATTRIBUTE, None) or {})}
        raw.setdefault("tp_degree", nc.tp_degree)
        raw.setdefault("lnc", nc.logical_nc_config)
        raw.setdefault("batch_size", nc.max_batch_size)
        raw.setdefault("ctx_batch_size", nc.ctx_batch_size)
        raw.setdefault("dtype", str(nc.torch_dtype).rsplit(".", 1)[-1])
        raw.setdefault("on_device_sampling", nc.on_device_sampling_config is not None)
        raw.setdefault("output_logits", nc.output_logits)
        raw.setdefault("on_cpu", nc.on_cpu)
        raw.setdefault("max_length", nc.max_length)
        raw.setdefault("context_buckets", tuple(nc.context_encoding_buckets or [nc.max_context_length]))
        raw.setdefault("token_buckets", tuple(nc.token_generation_buckets or [nc.max_length]))
        raw.setdefault("save_sharded_checkpoint", getattr(nc, "save_sharded_checkpoint", False))  # NxDI default
        return NeuronSettings(**raw)


def inference_config(model_dir: str | os.PathLike, settings: NeuronSettings) -> Qwen35MoeInferenceConfig:
    """The config to construct :class:`~qwen35_neuron.neuron.model.Qwen35MoeForCausalLM` with.

    Fails before anything is built when the TP degree cannot shard this model or max_length passes its positions.
    """
    check_settings_fit_model(settings, load_model_config(model_dir).text)
    neuron_config = Qwen35MoeNeuronConfig(**neuron_config_kwargs(settings))
    return Qwen35MoeInferenceConfig(neuron_config, load_config=load_qwen35_config(model_dir),
                                    **{SETTINGS_ATTRIBUTE: asdict(settings)})
