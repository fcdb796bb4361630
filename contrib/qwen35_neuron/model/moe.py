"""Sparse MoE of Qwen3.5: softmax router (fp32) -> top-k, renormalised; SwiGLU experts; a shared
expert whose output is scaled by a per-token sigmoid gate.

Routed experts, by shapes only: with fewer routed (token, expert) pairs than experts (decode), only the
chosen experts' weights are read, by index (``ModelOps.moe_decode``: the ``expert_decode`` kernel reads
them in place on Neuron; its twin, ``selected_experts``, is the CPU form).
With more (prefill) two formulations must agree:
- ``eager``: each expert runs only on the tokens routed to it (CPU speed; data-dependent shapes).
- ``static``: traceable fixed shapes. Dropless blocks: the (token, expert) pairs sorted by expert
  into a static number of fixed-size blocks, each block one expert's (about P = N * k rows of
  work); or, when that bound is not smaller, every expert on every token weighted by a dense
  routing matrix that is zero off the top-k.
Under TP each rank holds every expert's slice of the intermediate dim; the routed and shared
partial sums are added before the single all-reduce of the block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TextConfig
from ..config.tp_shapes import local_size
from ..parallel.providers import ParallelProvider
from .model_ops import TORCH_OPS, ModelOps


class Router(nn.Module):
    """weight [E, H]; returns (top-k weights renormalised to sum 1, top-k expert ids). The logits are
    computed in fp32 whatever the run dtype: a bf16 near-tie between experts could otherwise pick
    different experts in a K+1-token verify step than in plain one-token decoding."""

    def __init__(self, num_experts: int, hidden: int, top_k: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_experts, hidden))
        self.top_k = top_k

    def forward(self, x: torch.Tensor, ops: ModelOps = TORCH_OPS) -> tuple[torch.Tensor, torch.Tensor]:
        probs = ops.router_logits(x, self.weight).softmax(dim=-1)
        weights, ids = probs.topk(self.top_k, dim=-1)
        return weights / weights.sum(dim=-1, keepdim=True), ids


class Experts(nn.Module):
    """gate_up_proj [E, 2I, H] (gate rows, then up rows) and down_proj [E, H, I], HF's fused layout."""

    def __init__(self, num_experts: int, hidden: int, intermediate: int, impl: str, block_size: int = 128) -> None:
        super().__init__()
        self.gate_up_proj = nn.Parameter(torch.zeros(num_experts, 2 * intermediate, hidden))
        self.down_proj = nn.Parameter(torch.zeros(num_experts, hidden, intermediate))
        self.impl = impl
        self.block_size = block_size

    def forward(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor,
                ops: ModelOps = TORCH_OPS) -> torch.Tensor:
        """x [N, H]; weights, ids [N, k] -> weighted sum of the chosen experts' outputs [N, H]."""
        if ids.numel() < self.gate_up_proj.shape[0]:  # few tokens (decode): decided by shapes only
            return ops.moe_decode(x, weights, ids, self.gate_up_proj, self.down_proj)
        if self.impl == "eager":
            return self._eager(x, weights, ids)
        experts = self.gate_up_proj.shape[0]
        if _num_blocks(ids.numel(), experts, self.block_size) * self.block_size < x.shape[0] * experts:
            return self._blockwise(x, weights, ids)
        return self._all_experts(x, weights, ids)

    def _eager(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        flat_ids = ids.reshape(-1)
        order = flat_ids.argsort(stable=True)
        counts = torch.bincount(flat_ids, minlength=self.gate_up_proj.shape[0]).tolist()
        token_of = order // ids.shape[1]
        start = 0
        for expert, count in enumerate(counts):
            if count == 0:
                continue
            picks = order[start:start + count]
            tokens = token_of[start:start + count]
            start += count
            gate, up = F.linear(x[tokens], self.gate_up_proj[expert]).chunk(2, dim=-1)
            y = F.linear(F.silu(gate) * up, self.down_proj[expert])
            out.index_add_(0, tokens, y * weights.reshape(-1)[picks, None].to(y.dtype))
        return out

    def _blockwise(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Dropless fixed-capacity form: (token, expert) pairs sorted by expert into blocks of
        ``block_size`` slots, every block one expert's (pads: a zero token with weight 0). The block
        count is a static bound, ceil(P / block) + E, so the work is ~P rows, not N x E."""
        tokens, top_k = ids.shape
        experts, block = self.gate_up_proj.shape[0], self.block_size
        pairs = tokens * top_k
        num_blocks = _num_blocks(pairs, experts, block)
        flat_ids = ids.reshape(-1)
        order = flat_ids.argsort(stable=True)  # pairs grouped by expert
        sorted_ids = flat_ids[order]
        counts = F.one_hot(flat_ids, experts).sum(0)
        blocks_of = (counts + block - 1) // block
        first_block = blocks_of.cumsum(0) - blocks_of
        first_pair = counts.cumsum(0) - counts
        slot = first_block[sorted_ids] * block + torch.arange(pairs, device=x.device) - first_pair[sorted_ids]
        token_of_slot = torch.full((num_blocks * block,), tokens, dtype=torch.long, device=x.device)
        token_of_slot = token_of_slot.scatter(0, slot, order // top_k)
        weight_of_slot = torch.zeros(num_blocks * block, dtype=weights.dtype, device=x.device)
        weight_of_slot = weight_of_slot.scatter(0, slot, weights.reshape(-1)[order])
        block_end = (first_block + blocks_of)[None, :]
        block_expert = (torch.arange(num_blocks, device=x.device)[:, None] >= block_end).sum(1).clamp(max=experts - 1)
        padded = torch.cat([x, x.new_zeros(1, x.shape[1])])
        grouped = padded[token_of_slot].view(num_blocks, block, -1)
        gate, up = torch.einsum("bth,bih->bti", grouped, self.gate_up_proj[block_expert]).chunk(2, dim=-1)
        # routing weights applied to the [slots, I] activations, not to the [slots, H] outputs
        h = F.silu(gate) * up * weight_of_slot.view(num_blocks, block, 1).to(gate.dtype)
        y = torch.einsum("bti,bhi->bth", h, self.down_proj[block_expert]).reshape(-1, x.shape[1])
        return padded.new_zeros(padded.shape).index_add(0, token_of_slot, y)[:tokens]

    def _all_experts(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        dense = torch.zeros(x.shape[0], self.gate_up_proj.shape[0], dtype=weights.dtype, device=x.device)
        dense = dense.scatter(1, ids, weights)  # [N, E], zero off the top-k
        gate, up = torch.einsum("nh,eih->nei", x, self.gate_up_proj).chunk(2, dim=-1)
        h = F.silu(gate) * up * dense[..., None].to(gate.dtype)  # weighted before the down projection
        return torch.einsum("nei,ehi->neh", h, self.down_proj).sum(dim=1)


def _num_blocks(pairs: int, experts: int, block: int) -> int:
    """Static bound on the blocks of the blockwise form: every expert may leave one block part-filled."""
    return -(-pairs // block) + experts


class SharedExpert(nn.Module):
    """A SwiGLU MLP on this rank's slice of the intermediate dim; its sum happens in the MoE block."""

    def __init__(self, hidden: int, intermediate: int, provider: ParallelProvider) -> None:
        super().__init__()
        self.gate_proj = provider.sharded(nn.Linear, hidden, intermediate, bias=False)
        self.up_proj = provider.sharded(nn.Linear, hidden, intermediate, bias=False)
        self.down_proj = provider.sharded(nn.Linear, intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class SparseMoe(nn.Module):
    def __init__(self, config: TextConfig, provider: ParallelProvider, impl: str, block_size: int = 128) -> None:
        super().__init__()
        tp, hidden = provider.tp_degree, config.hidden_size
        self.gate = Router(config.num_experts, hidden, config.num_experts_per_tok)
        self.experts = provider.sharded(Experts, config.num_experts, hidden,
                                        local_size(config.moe_intermediate_size, tp, "moe_intermediate_size"), impl,
                                        block_size)
        self.shared_expert = SharedExpert(
            hidden, local_size(config.shared_expert_intermediate_size, tp, "shared_expert_intermediate_size"),
            provider)
        self.shared_expert_gate = nn.Linear(hidden, 1, bias=False)
        self._provider = [provider]

    def forward(self, x: torch.Tensor, ops: ModelOps = TORCH_OPS) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        weights, ids = self.gate(flat, ops)
        routed = self.experts(flat, weights, ids, ops)
        shared = torch.sigmoid(self.shared_expert_gate(flat)) * self.shared_expert(flat)
        return self._provider[0].all_reduce(routed + shared).reshape(shape)
