"""The key under which the vLLM-Neuron plugin looks up an NxDI model class, as a pure function.

The plugin's NxDI route (vllm-neuron 0.5.0, ``worker/neuronx_distributed_model_loader.py``,
``_get_neuron_model_cls``) turns the first Hugging Face architecture name into a pair
``(model, task)`` and reads ``neuronx_distributed_inference.utils.constants.MODEL_TYPES[model][task]``.
We re-state that rule here so our registration uses exactly the key the plugin will derive, and so
the rule is tested on a CPU. The rule, at the pinned release:

1. a leading ``Neuron`` is dropped when the name also contains ``For`` (NxDI class names accepted);
2. the name must contain ``For``; it is split at the first ``For`` into model and task;
3. task ``ConditionalGeneration`` is read as ``CausalLM``; the task is then CamelCase -> kebab-case;
4. the model part is lower-cased, with five special cases: ``gptoss`` -> ``gpt_oss``,
   ``qwen3moe`` -> ``qwen3_moe``, ``qwen2vl`` -> ``qwen2_vl``, ``qwen3vl`` -> ``qwen3_vl``, and the
   architecture ``LlavaForConditionalGeneration`` -> ``pixtral``.

vllm-neuron 0.2.x has the same rule without the ``Neuron`` prefix and without the gptoss/qwen*vl
cases; both releases give ``("qwen3_5moe", "causal-lm")`` for the Qwen3.5 MoE architectures.
"""

from __future__ import annotations

import re

from ..errors import UnsupportedConfigError

PLUGIN_RULE_RELEASE = "vllm-neuron 0.5.0"

_MODEL_RENAMES = {
    "gptoss": "gpt_oss",
    "qwen3moe": "qwen3_moe",
    "qwen2vl": "qwen2_vl",
    "qwen3vl": "qwen3_vl",
}
_ARCHITECTURE_RENAMES = {"LlavaForConditionalGeneration": "pixtral"}


def camel_to_kebab(name: str) -> str:
    """``CausalLM`` -> ``causal-lm``, ``ImageEncoding`` -> ``image-encoding`` (the plugin's two-step split)."""
    words = re.sub(r"(.)([A-Z][a-z]+)", r"\1-\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1-\2", words).lower()


def nxdi_model_key(architecture: str) -> tuple[str, str]:
    """The ``(model, task)`` pair vLLM-Neuron derives from a Hugging Face architecture name.

    Raises :class:`UnsupportedConfigError` where the plugin itself would report the model as
    unsupported (no ``For`` in the name).
    """
    if architecture.startswith("Neuron") and "For" in architecture:
        architecture = architecture[len("Neuron"):]
    if "For" not in architecture:
        raise UnsupportedConfigError(
            f"architecture {architecture!r} has no 'For': {PLUGIN_RULE_RELEASE} cannot map it to an NxDI "
            "model class; use an architecture name of the form <Model>For<Task>"
        )
    model, task = architecture.split("For", 1)
    if task == "ConditionalGeneration":
        task = "CausalLM"
    model = _MODEL_RENAMES.get(model.lower(), model.lower())
    model = _ARCHITECTURE_RENAMES.get(architecture, model)
    return model, camel_to_kebab(task)
