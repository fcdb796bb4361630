"""Serving: registration of the Neuron model with vLLM-Neuron (a ``vllm.general_plugins`` entry point).

Nothing here imports vLLM or the Neuron SDK at import time.
"""

from .arch_key import camel_to_kebab, nxdi_model_key
from .vllm_plugin import ARCHITECTURES, MODEL_CLASS_PATH, LazyModelClass, RegistrationResult, register, register_into

__all__ = [
    "ARCHITECTURES",
    "MODEL_CLASS_PATH",
    "LazyModelClass",
    "RegistrationResult",
    "camel_to_kebab",
    "nxdi_model_key",
    "register",
    "register_into",
]
