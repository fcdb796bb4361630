"""What vLLM's own tables hold for Qwen3.5 MoE on the NxDI route (vLLM 0.16, vllm-neuron 0.5.0).

vLLM 0.16 has no Qwen3.5 model. Its ``ModelConfig`` still looks every architecture up in
``ModelRegistry`` and reads the class's declared interfaces (text generation, multimodal, hybrid,
...) before anything is loaded; on the NxDI route vLLM-Neuron then builds its own module around
the NxDI application and never constructs the registered class. :class:`Qwen35MoeNxdiDeclaration`
is that registry entry: a text-generation model that is not hybrid in vLLM's sense (the DeltaNet
state lives inside the compiled NxDI model, not in vLLM's cache) and not multimodal (the NxDI
route serves text). Constructing it means vLLM tried to run the model itself, which it cannot:
the error says what to install.

:class:`Qwen35MoeVllmConfigUpdate` goes into ``MODELS_CONFIG_MAP`` (vLLM's per-architecture
config hook): prefix caching is turned off, because reusing cached KV blocks without the matching
DeltaNet state gives wrong tokens; vLLM does the same for its own hybrid models.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from ..errors import Qwen35Error

logger = logging.getLogger("vllm.plugins.qwen35_neuron")

NOT_SERVABLE = ("vLLM {version} has no Qwen3.5 model of its own: Qwen3.5 MoE is served on Trainium2 by "
                "vllm-neuron 0.5.0 through NxD Inference (pip install vllm-neuron==0.5.0 on a Neuron host; "
                "the Neuron platform then loads qwen35_neuron.neuron.model.Qwen35MoeForCausalLM)")


class Qwen35MoeNxdiDeclaration(nn.Module):
    """vLLM's registry entry for the Qwen3.5 MoE architectures: interfaces only, never constructed."""

    def __init__(self, *, vllm_config: Any = None, prefix: str = "") -> None:
        raise Qwen35Error(NOT_SERVABLE.format(version=_vllm_version()))

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        raise Qwen35Error(NOT_SERVABLE.format(version=_vllm_version()))

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        raise Qwen35Error(NOT_SERVABLE.format(version=_vllm_version()))

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        raise Qwen35Error(NOT_SERVABLE.format(version=_vllm_version()))


class Qwen35MoeVllmConfigUpdate:
    """vLLM's per-architecture config hook (the ``VerifyAndUpdateConfig`` interface, duck-typed so
    this module does not import vLLM)."""

    @staticmethod
    def verify_and_update_model_config(model_config: Any) -> None:
        return

    @staticmethod
    def verify_and_update_config(vllm_config: Any) -> None:
        cache = getattr(vllm_config, "cache_config", None)
        if cache is not None and cache.enable_prefix_caching:
            cache.enable_prefix_caching = False
            logger.warning("qwen35_neuron: prefix caching turned off: cached KV blocks cannot carry Qwen3.5's "
                           "DeltaNet state, so reusing them would give wrong tokens")


def _vllm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vllm")
    except PackageNotFoundError:
        return "(not installed)"
