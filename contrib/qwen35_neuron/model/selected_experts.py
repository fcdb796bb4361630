"""The routed experts of a few tokens (decode): only the chosen experts' weights, the twin of the
``expert_decode`` NKI kernel.

With fewer (token, expert) pairs than experts, each pair's expert weights are taken by index (the
kernel reads exactly those rows from HBM, by a DMA whose offset is the expert id: selective loading).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def selected_experts(x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor, gate_up_proj: torch.Tensor,
                     down_proj: torch.Tensor) -> torch.Tensor:
    """x [N, H]; weights, ids [N, k]; gate_up_proj [E, 2I, H] (gate rows, then up rows); down_proj [E, H, I]
    -> sum_j weights[n, j] * down_e(silu(gate_e x_n) * up_e x_n) with e = ids[n, j], [N, H] in x's dtype."""
    gate_up = torch.einsum("nh,nkih->nki", x, gate_up_proj[ids])
    gate, up = gate_up.chunk(2, dim=-1)
    y = torch.einsum("nki,nkhi->nkh", F.silu(gate) * up, down_proj[ids])
    return (y * weights[..., None].to(y.dtype)).sum(dim=1)
