"""Gated DeltaNet token mixer (the 'linear_attention' layers): conv, gated delta rule, gated norm.

State in -> state out: ``conv_state`` [B, C, K-1] and ``recurrent_state`` [B, Hv, Dk, Dv] (fp32).
Padding never changes state: pad slots get g = 0 and beta = 0 and are left out of the conv state.
A row with no earlier context (cache_start 0) starts from zero state.

Decode (one slot) and speculative verify (K+1 slots) walk the slots through the same decode op, so
slot t of a verify step computes exactly what a plain decode step at that token would; a verify
step returns the states after every slot ([B, S, C, K-1] conv windows, [B, S, Hv, Dk, Dv]
recurrent) for the caller to commit at each row's accepted length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TextConfig
from ..config.tp_shapes import head_shard
from ..parallel.providers import ParallelProvider
from .gated_delta_rule import recurrent_gated_delta_rule
from .norms import GatedRMSNorm, gated_rms_norm
from .model_ops import ModelOps
from .step import StepInputs


def gated_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                 a_log: torch.Tensor, dt_bias: torch.Tensor, z: torch.Tensor, norm_weight: torch.Tensor,
                 state: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode at gdn_tkg's op boundary, composed from the model's own pieces: gates from the raw
    projections (beta = sigmoid(b), g = -exp(A_log) softplus(a + dt_bias)), the recurrent gated
    delta rule, then the gated RMSNorm. Returns (normed out in v's dtype, new fp32 state)."""
    g = -a_log.float().exp() * F.softplus(a.float() + dt_bias.float())
    core, new_state = recurrent_gated_delta_rule(q, k, v, g, b.float().sigmoid(), state)
    return gated_rms_norm(core.to(v.dtype), z, norm_weight, eps), new_state


class ConvWeight(nn.Module):
    """Holds the depthwise conv weight [C, 1, K] under HF's name ``conv1d.weight``."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels, 1, kernel))


class GatedDeltaNet(nn.Module):
    def __init__(self, config: TextConfig, provider: ParallelProvider, chunk_size: int) -> None:
        super().__init__()
        tp, rank = provider.tp_degree, provider.rank
        self.num_k_heads = head_shard(config.linear_num_key_heads, tp, rank, "linear_num_key_heads").count
        self.num_v_heads = head_shard(config.linear_num_value_heads, tp, rank, "linear_num_value_heads").count
        self.head_k_dim, self.head_v_dim = config.linear_key_head_dim, config.linear_value_head_dim
        self.chunk_size = chunk_size
        key_dim, value_dim = self.num_k_heads * self.head_k_dim, self.num_v_heads * self.head_v_dim
        self.sections = (key_dim, key_dim, value_dim)
        hidden = config.hidden_size
        self.in_proj_qkv = provider.column(hidden, sum(self.sections) * tp)
        self.in_proj_z = provider.column(hidden, config.linear_value_dim)
        self.in_proj_b = provider.column(hidden, config.linear_num_value_heads)
        self.in_proj_a = provider.column(hidden, config.linear_num_value_heads)
        self.conv1d = provider.sharded(ConvWeight, sum(self.sections), config.linear_conv_kernel_dim)
        self.dt_bias = nn.Parameter(torch.ones(self.num_v_heads))
        self.A_log = nn.Parameter(torch.zeros(self.num_v_heads))
        self.norm = GatedRMSNorm(self.head_v_dim, config.rms_norm_eps)
        self.out_proj = provider.row(config.linear_value_dim, hidden)

    def forward(self, x: torch.Tensor, step: StepInputs, conv_state: torch.Tensor,
                recurrent_state: torch.Tensor, ops: ModelOps) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, length, _ = x.shape
        valid = step.valid[..., None].to(x.dtype)
        x = x * valid  # pad slots contribute nothing
        keep = step.continuing.to(conv_state.dtype)[:, None, None]
        qkv, conv_state = self.in_proj_qkv(x), conv_state * keep
        mixed, new_conv = ops.causal_conv(qkv, conv_state, self.conv1d.weight[:, 0, :], step.valid_len)
        q, k, v = torch.split(mixed, self.sections, dim=-1)
        q = q.reshape(batch, length, self.num_k_heads, self.head_k_dim)
        k = k.reshape(batch, length, self.num_k_heads, self.head_k_dim)
        v = v.reshape(batch, length, self.num_v_heads, self.head_v_dim)
        state = recurrent_state * keep.to(recurrent_state.dtype)[..., None]
        z = self.in_proj_z(x).reshape(batch, length, self.num_v_heads, self.head_v_dim)
        b, a = self.in_proj_b(x), self.in_proj_a(x)
        if length == 1 or step.speculative:  # static: decode graphs, and verify graphs of K+1 slots
            out, states = self._decode_slots(q, k, v, a, b, z, state, step.valid, ops)
            out = self.out_proj(out.reshape(batch, length, -1))
            if step.speculative:
                return out, conv_windows(conv_state, qkv), torch.stack(states, dim=1).to(recurrent_state.dtype)
            return out, new_conv, states[-1].to(recurrent_state.dtype)  # no stacked copy in plain decode
        beta, g = self._gates(a, b, valid)
        out, state = ops.gdr_prefill(q, k, v, g, beta, state, self.chunk_size)
        out = self.norm(out.to(x.dtype), z).reshape(batch, length, -1)
        return self.out_proj(out), new_conv, state.to(recurrent_state.dtype)

    def _gates(self, a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(beta, g) in fp32, zero at pad slots (which then leave the state alone)."""
        beta = torch.sigmoid(b.float()) * valid.float()
        g = -self.A_log.float().exp() * F.softplus(a.float() + self.dt_bias.float()) * valid.float()
        return beta, g

    def _decode_slots(self, q, k, v, a, b, z, state: torch.Tensor, valid: torch.Tensor,
                      ops: ModelOps) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Slot by slot through the decode op (static: S is a shape). Returns (gated-normed outputs
        [B, S, Hv, Dv], the fp32 state after each slot, S x [B, Hv, Dk, Dv]); a pad slot keeps the state."""
        outs, states = [], []
        for t in range(q.shape[1]):
            slot = slice(t, t + 1)
            if ops.gdr_decode_gated is not None:  # gates + norm folded in one op (gdn_tkg's boundary)
                out, new = ops.gdr_decode_gated(q[:, slot], k[:, slot], v[:, slot], a[:, slot], b[:, slot], self.A_log,
                                                self.dt_bias, z[:, slot], self.norm.weight, state, self.norm.eps)
            else:
                beta, g = self._gates(a[:, slot], b[:, slot], valid[:, slot, None].to(v.dtype))
                out, new = ops.gdr_decode(q[:, slot], k[:, slot], v[:, slot], g, beta, state)
                out = self.norm(out.to(v.dtype), z[:, slot])
            state = torch.where(valid[:, t, None, None, None], new, state)  # idle rows keep theirs
            outs.append(out)
            states.append(state)
        return torch.cat(outs, dim=1), states


def conv_windows(conv_state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Conv state after each slot of x [B, S, C] ([B, S, C, K-1]): the last K-1 inputs ending there, the
    same window :func:`~.causal_conv.causal_conv1d` keeps at a row's real length (a pure copy)."""
    history = torch.cat([conv_state.to(x.dtype), x.transpose(1, 2)], dim=-1)  # [B, C, K-1+S]
    windows = history.unfold(-1, conv_state.shape[-1], 1)[:, :, 1:]  # [B, C, S, K-1]
    return windows.permute(0, 2, 1, 3).to(conv_state.dtype)
