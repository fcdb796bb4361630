"""Optional MoE backend (``moe_backend="nxd"``): NxD's RouterTopK + ExpertMLPsV2 with our gated shared expert.

NxD's ``MoE`` module adds an *ungated* shared expert and all-reduces inside, so Qwen3.5's
``sigmoid(x w_g) * shared(x)`` would need a second all-reduce. Here the router and the expert MLPs
are called directly: ExpertMLPsV2 returns this rank's partial sum (NxD delays the reduction to the
MoE block), the shared expert's row-parallel partial sum is gated by the replicated gate (exact:
the gate is per token, the same on every rank) and both are reduced once.

What this buys: NxD's selective-loading decode and blockwise prefill kernels for the experts. What
it costs: NxD's router returns affinities in the activation dtype (ours keeps fp32 routing
weights), and the fused TKG MoE kernel of ``MoE`` (``init_tkg_module``) is not used. The checkpoint
layout it reads is produced by ``neuron_layout.layout.neuron_checkpoint(..., moe_backend="nxd")``.
Not run on hardware.
"""

from __future__ import annotations

import torch
from torch import nn

from neuronx_distributed.modules.moe.expert_mlps_v2 import ExpertMLPsV2
from neuronx_distributed.modules.moe.moe_configs import RoutedExpertsMLPOpsConfig
from neuronx_distributed.modules.moe.routing import RouterTopK
from neuronx_distributed.parallel_layers import parallel_state
from neuronx_distributed.parallel_layers.mappings import reduce_from_tensor_model_parallel_region

from ..config import TextConfig
from ..model.moe import SparseMoe


class NxdSparseMoe(nn.Module):
    """Same inputs and outputs as :class:`~qwen35_neuron.model.moe.SparseMoe`; parameter names follow
    NxD (``router.linear_router``, ``expert_mlps.mlp_op.*``) and ours for the shared expert."""

    def __init__(self, text: TextConfig, neuron_config, shared_from: SparseMoe) -> None:
        super().__init__()
        self.hidden_size = text.hidden_size
        self.router = RouterTopK(num_experts=text.num_experts, top_k=text.num_experts_per_tok,
                                 hidden_size=text.hidden_size, dtype=torch.float32, act_fn="softmax",
                                 sequence_parallel_enabled=False, sequence_dimension=1, bias=False,
                                 store_transposed_weights=False)
        routed = RoutedExpertsMLPOpsConfig(
            num_experts=text.num_experts, hidden_size=text.hidden_size, intermediate_size=text.moe_intermediate_size,
            top_k=text.num_experts_per_tok, hidden_act="silu", glu_mlp=True, bias=False,
            normalize_top_k_affinities=True,
            enable_spmd_rank=neuron_config.blockwise_matmul_config.parallelize_token_to_block_mapping,
        )
        self.expert_mlps = ExpertMLPsV2(
            routed_experts_mlp_config=routed, blockwise_matmul_config=neuron_config.blockwise_matmul_config,
            dtype=neuron_config.torch_dtype, sequence_parallel_enabled=False, is_prefill=neuron_config.is_prefill_stage,
            tensor_model_parallel_group=parallel_state.get_tensor_model_parallel_group(),
            expert_model_parallel_group=parallel_state.get_expert_model_parallel_group(),
        )
        self.shared_expert = shared_from.shared_expert
        self.shared_expert_gate = shared_from.shared_expert_gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.hidden_size)
        _, affinities, expert_index = self.router(flat)
        routed = self.expert_mlps(hidden_states=flat, expert_affinities=affinities, expert_index=expert_index,
                                  seq_len=shape[1])
        shared = torch.sigmoid(self.shared_expert_gate(flat)) * self.shared_expert(flat)
        return reduce_from_tensor_model_parallel_region(routed + shared.to(routed.dtype)).reshape(shape)


def use_nxd_moe(layers: nn.ModuleList, text: TextConfig, neuron_config) -> None:
    """Replace every decoder layer's SparseMoe by :class:`NxdSparseMoe` (keeping its shared expert)."""
    for layer in layers:
        layer.mlp = NxdSparseMoe(text, neuron_config, layer.mlp)
