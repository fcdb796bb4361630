"""Partial, interleaved multimodal RoPE (mRoPE) of Qwen3.5's gated attention.

Only the first ``rotary_dim`` channels of each head rotate (25 % of head_dim in the released
models). Each rotary frequency j follows one position axis: by default time (T); j = 1 mod 3 (below
3 * section[1]) follows height, j = 2 mod 3 (below 3 * section[2]) follows width. Text tokens use
the same id on all three axes, so for text this is ordinary RoPE. The axis choice is a constant
index table, so the graph is static.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import TextConfig


def _axis_of_frequency(num_freqs: int, section: tuple[int, ...]) -> torch.Tensor:
    axis = torch.zeros(num_freqs, dtype=torch.long)
    for dim, offset in ((1, 1), (2, 2)):
        axis[offset : 3 * section[dim] : 3] = dim
    return axis


class MultimodalRotary(nn.Module):
    """positions [3, B, S] -> (cos, sin) [B, S, rotary_dim] in fp32."""

    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        dim = config.rotary_dim
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("axis", _axis_of_frequency(dim // 2, config.mrope_section), persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        per_freq = positions[self.axis].permute(1, 2, 0).float()  # [B, S, dim/2]: each freq's axis
        angles = per_freq * self.inv_freq
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos(), angles.sin()


def apply_partial_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, S, H, D]; cos/sin [B, S, R]: rotate the first R channels (rotate-half convention)."""
    rot_dim = cos.shape[-1]
    rot, rest = x[..., :rot_dim].float(), x[..., rot_dim:]
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    half = rot_dim // 2
    rotated = torch.cat([-rot[..., half:], rot[..., :half]], dim=-1)
    return torch.cat([(rot * cos + rotated * sin).to(x.dtype), rest], dim=-1)
