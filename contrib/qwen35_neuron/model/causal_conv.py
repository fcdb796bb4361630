"""Causal depthwise conv1d + SiLU over DeltaNet's q/k/v channels, with a carried conv state.

The conv state holds each row's last K-1 *real* inputs, so a continuation (TKG step or the next
chunk of a chunked prefill) sees exactly the history one long call would have seen. Right-padded
rows take their new state from the window that ends at their real length: pads never enter it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv1d(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    valid_len: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x: [B, S, C]; conv_state: [B, C, K-1]; weight: [C, K]; valid_len: [B] real tokens in x.

    Returns (silu(conv(x)) [B, S, C], new conv_state [B, C, K-1]). Works for S = 1 (decode) too.
    """
    kernel = weight.shape[-1]
    history = torch.cat([conv_state.to(x.dtype), x.transpose(1, 2)], dim=-1)  # [B, C, K-1+S]
    y = F.conv1d(history, weight.to(x.dtype).unsqueeze(1), groups=weight.shape[0])  # [B, C, S]
    # the new state is history[valid_len : valid_len + K-1]: the last K-1 real inputs
    offsets = valid_len.to(torch.long)[:, None] + torch.arange(kernel - 1, device=x.device)
    index = offsets[:, None, :].expand(-1, history.shape[1], -1)
    new_state = history.gather(-1, index)
    return F.silu(y).transpose(1, 2), new_state.to(conv_state.dtype)
