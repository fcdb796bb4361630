"""The dense family's feed-forward block: a SwiGLU MLP, column-parallel in, row-parallel out.

``gate_proj`` / ``up_proj`` split their intermediate dim over TP ranks and ``down_proj`` sums the
ranks' partial outputs (one all-reduce, in the provider's row-parallel linear), so a rank holds
1/R of the MLP - the same cut as the MoE's shared expert.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TextConfig
from ..parallel.providers import ParallelProvider


class DenseMlp(nn.Module):
    def __init__(self, config: TextConfig, provider: ParallelProvider) -> None:
        super().__init__()
        hidden, intermediate = config.hidden_size, config.intermediate_size
        self.gate_proj = provider.column(hidden, intermediate)
        self.up_proj = provider.column(hidden, intermediate)
        self.down_proj = provider.row(intermediate, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
