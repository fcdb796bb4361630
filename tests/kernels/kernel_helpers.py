"""Helpers of the kernel tests. Tolerances use one global scale, as nki-library's tests do:
max |kernel - twin| / max |twin|."""

from __future__ import annotations

import torch


def rel_err(got, want) -> float:
    """max |got - want| / max |want| in float64."""
    got = torch.as_tensor(got).double()
    want = torch.as_tensor(want).double()
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def gdn_inputs(batch: int, seq: int, k_heads: int, v_heads: int, dim: int, seed: int = 0,
               dtype: torch.dtype = torch.float32):
    """Random raw q/k/v (not normalised), log decays g <= 0, beta in (0, 1), fp32 state."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, seq, k_heads, dim, generator=gen).to(dtype)
    k = torch.randn(batch, seq, k_heads, dim, generator=gen).to(dtype)
    v = torch.randn(batch, seq, v_heads, dim, generator=gen).to(dtype)
    g = -torch.rand(batch, seq, v_heads, generator=gen)
    beta = torch.rand(batch, seq, v_heads, generator=gen)
    state = 0.5 * torch.randn(batch, v_heads, dim, dim, generator=gen)
    return q, k, v, g, beta, state
