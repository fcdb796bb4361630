"""The gated delta rule in plain PyTorch: the reference twin of our NKI kernels.

State S [Dk, Dv] per (row, value head), in fp32. One token with key k, value v, query q, log decay
g <= 0 and write strength beta in [0, 1]:

    S <- exp(g) * S
    S <- S + k (beta * (v - S^T k))^T          (delta rule: write only what S does not predict)
    o  = S^T q

q and k are L2-normalised and q is scaled by Dk^-1/2 inside the op (as the kernels do). Value heads
outnumber key heads (GQA of DeltaNet): value head h reads key head h // (Hv // Hk).

Two forms with equal results: ``recurrent_gated_delta_rule`` walks tokens (decode, T = 1 or k
speculative tokens) and ``chunked_gated_delta_rule`` handles C tokens per step with matmuls
(prefill). Padding is expressed by the caller as g = 0 and beta = 0, which leaves S unchanged.
"""

from __future__ import annotations

import torch

L2_NORM_EPS = 1e-6


def l2_normalize(x: torch.Tensor, eps: float = L2_NORM_EPS) -> torch.Tensor:
    """x / sqrt(sum(x^2) + eps) over the last dim (the FLA / transformers convention)."""
    return x * torch.rsqrt((x * x).sum(dim=-1, keepdim=True) + eps)


def _prepare(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor):
    """fp32, [B, H, T, D] layout, normalised q/k expanded to value heads."""
    num_k_heads, num_v_heads = k.shape[2], v.shape[2]
    group = num_v_heads // num_k_heads
    q, k = (l2_normalize(x.float()) for x in (q, k))
    q = q * q.shape[-1] ** -0.5
    q, k = (x.repeat_interleave(group, dim=2) if group > 1 else x for x in (q, k))
    q, k, v = (x.float().transpose(1, 2) for x in (q, k, v))
    g, beta = (x.float().transpose(1, 2) for x in (g, beta))
    return q, k, v, g, beta


def recurrent_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-by-token form.

    q, k: [B, T, Hk, Dk]; v: [B, T, Hv, Dv]; g, beta: [B, T, Hv]; state: [B, Hv, Dk, Dv] (fp32).
    Returns (out [B, T, Hv, Dv], new state), both fp32.
    """
    q, k, v, g, beta = _prepare(q, k, v, g, beta)
    state = state.float()
    outs = []
    for t in range(q.shape[2]):  # static: T is a shape
        state = state * g[:, :, t].exp()[..., None, None]
        predicted = torch.einsum("bhkv,bhk->bhv", state, k[:, :, t])
        delta = (v[:, :, t] - predicted) * beta[:, :, t, None]
        state = state + k[:, :, t, :, None] * delta[:, :, None, :]
        outs.append(torch.einsum("bhkv,bhk->bhv", state, q[:, :, t]))
    out = torch.stack(outs, dim=2).transpose(1, 2)
    return out, state


def unit_lower_inverse(a: torch.Tensor) -> torch.Tensor:
    """(I - A)^-1 for strictly lower-triangular A [..., C, C], C a power of two.

    A is nilpotent (A^C = 0), so (I - A)^-1 = (I + A)(I + A^2)(I + A^4)...(I + A^(C/2)):
    log2(C) squarings and products, all matmuls - the form a TensorE kernel uses, and it
    exports to a static graph (no triangular solver needed).
    """
    size = a.shape[-1]
    eye = torch.eye(size, dtype=a.dtype, device=a.device)
    inverse = eye + a
    power = a
    for _ in range(size.bit_length() - 2):  # powers 2, 4, ..., C/2
        power = power @ power
        inverse = inverse @ (eye + power)
    return inverse


def chunked_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    state: torch.Tensor,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunk form (WY / UT transform): S / C sequential steps of matmuls.

    Same arguments and results as :func:`recurrent_gated_delta_rule`. Within a chunk, with
    cumulative log decay c_i and decay D_ij = exp(c_i - c_j) for j <= i:
      A = -(beta k k^T * D) strictly lower,  W = (I - A)^-1
      u = W (beta v),  w = W (beta k exp(c))           (pseudo-values and state readers)
      v_new = u - w S,  o = (q exp(c)) S + (q k^T * D, incl. diagonal) v_new
      S <- exp(c_last) S + (k exp(c_last - c))^T v_new
    """
    q, k, v, g, beta = _prepare(q, k, v, g, beta)
    batch, heads, length, dk = q.shape
    dv = v.shape[-1]
    size = min(chunk_size, 1 << max(length - 1, 0).bit_length())  # small prompts: one short chunk
    pad = (-length) % size
    if pad:  # static: pads carry g = 0 and beta = 0, so they leave the state alone
        q, k, v = (torch.nn.functional.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        g, beta = (torch.nn.functional.pad(x, (0, pad)) for x in (g, beta))
    chunks = (length + pad) // size
    q, k, v = (x.reshape(batch, heads, chunks, size, -1) for x in (q, k, v))
    g, beta = (x.reshape(batch, heads, chunks, size) for x in (g, beta))

    cum = g.cumsum(-1)
    lower_incl = torch.ones(size, size, dtype=torch.bool, device=q.device).tril()
    # exp only of non-positive numbers: masked entries get -inf before exp, so nothing overflows
    decay = (cum[..., :, None] - cum[..., None, :]).masked_fill(~lower_incl, float("-inf")).exp()
    strictly_lower = decay.tril(-1)
    a = -(beta[..., None] * (k @ k.transpose(-1, -2))) * strictly_lower
    inverse = unit_lower_inverse(a)
    u = inverse @ (v * beta[..., None])
    w = inverse @ (k * (beta * cum.exp())[..., None])
    q_decayed = q * cum.exp()[..., None]
    intra = (q @ k.transpose(-1, -2)) * decay
    last = cum[..., -1:]
    k_to_end = k * (last - cum).exp()[..., None]

    state = state.float()
    outs = []
    for c in range(chunks):  # static: the number of chunks is a shape
        v_new = u[:, :, c] - w[:, :, c] @ state
        outs.append(q_decayed[:, :, c] @ state + intra[:, :, c] @ v_new)
        state = state * last[:, :, c, :, None].exp() + k_to_end[:, :, c].transpose(-1, -2) @ v_new
    out = torch.stack(outs, dim=2).reshape(batch, heads, chunks * size, dv)[:, :, :length]
    return out.transpose(1, 2), state
