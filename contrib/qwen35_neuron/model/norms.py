"""The two RMSNorms of Qwen3.5.

``OffsetRMSNorm`` (decoder norms, final norm, attention q/k norms) scales by (1 + w): its weights
are stored centred on zero. ``GatedRMSNorm`` (DeltaNet output) scales by a plain w and then
multiplies by SiLU of the gate z. Both normalise in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _rms_normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


class OffsetRMSNorm(nn.Module):
    """y = norm(x) * (1 + w), computed in fp32 and returned in x's dtype."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (_rms_normalize(x, self.eps) * (1.0 + self.weight.float())).to(x.dtype)


def gated_rms_norm(x: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """norm(x) * w * silu(gate), returned in x's dtype (normalised in fp32, scaled in x's dtype)."""
    normed = weight * _rms_normalize(x, eps).to(x.dtype)
    return (normed * F.silu(gate.float())).to(x.dtype)


class GatedRMSNorm(nn.Module):
    """y = norm(x) * w * silu(z): DeltaNet's per-head output norm, gated by the z projection."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return gated_rms_norm(x, gate, self.weight, self.eps)
