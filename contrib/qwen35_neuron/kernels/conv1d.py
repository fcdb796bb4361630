"""Causal depthwise conv1d + SiLU with a carried conv state, as NKI kernels.

Twin: `qwen35_neuron.model.causal_conv.causal_conv1d(x [B, S, C], conv_state [B, C, K-1],
weight [C, K], valid_len [B]) -> (silu(conv) [B, S, C], new conv_state)`. The new state is
the history [state | x] at columns valid_len .. valid_len+K-2 (the last K-1 real inputs).

`causal_conv1d_cte` (any S, context encoding): the depthwise taps run on TensorE as
    y[s, c] = sum_k sum_c' xh^T[c', s + k] diag(w[:, k])[c', c]
with xh^T the channel-major history (TensorE transposes of the token rows) as the stationary
and diag(w_k) per 128-channel tile as the moving operand: the result lands token-major in
PSUM (no transpose back), SiLU is the PSUM eviction (ScalarE), stores are contiguous rows.
The diagonal weight tiles are built once per launch on GpSimd (one instruction). The new
state is a DMA from the history at the run-time column valid_len (a dynamic offset).

`causal_conv1d_tkg` (S = 1, decode): channels c = p * (C/128) + j on partitions, so every
load and store is one contiguous run per partition; y = sum_k w_k h_k is two VectorE
instructions over all channels and rows, and the state shift for valid_len in {0, 1} is an
exact blend  new = v h[1:K] + (1 - v) h[0:K-1].
"""

import nki
import nki.isa as nisa
import nki.language as nl

from .kernel_utils import constant_identity

TOK = 128  # tokens per output tile
CB = 4  # channel tiles per PSUM bank (4 x 128 fp32)


def _diag_weights(weight, ct, kk, mm_dt):
    """[128, ct, kk, 128]: diag(w[t*128 + p, k]) for every channel tile t and tap k."""
    w = nl.ndarray((128, ct, kk), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=w, src=weight.ap(pattern=[[kk, 128], [128 * kk, ct], [1, kk]], offset=0))
    eye = constant_identity(128, nl.float32)
    diag = nl.ndarray((128, ct, kk, 128), dtype=mm_dt, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=diag, data1=eye.reshape((128, 1, 1, 128)).broadcast(1, ct).broadcast(2, kk),
                       data2=w.reshape((128, ct, kk, 1)).broadcast(3, 128), op=nl.multiply,
                       engine=nisa.engine.gpsimd)
    return diag


def _history(x, conv_state, b, ct, kk, seq, mm_dt):
    """Channel-major history [128, ct, K-1 + S_pad] = [state | x^T] (zeros past S); the
    state goes first (the DMA queues serve requests in program order)."""
    chans = x.shape[2]
    hist_len = kk - 1 + ((seq + TOK - 1) // TOK) * TOK
    hist = nl.ndarray((128, ct, hist_len), dtype=mm_dt, buffer=nl.sbuf)
    nisa.dma_copy(dst=hist[:, :, 0:kk - 1],
                  src=conv_state.ap(pattern=[[kk - 1, 128], [128 * (kk - 1), ct], [1, kk - 1]],
                                    offset=b * chans * (kk - 1)))
    if seq % TOK:
        nisa.memset(hist[:, :, kk - 1 + seq:hist_len], 0.0)
    for s0 in range(0, seq, TOK):
        rows = min(TOK, seq - s0)
        x_rows = nl.ndarray((TOK, chans), dtype=mm_dt, buffer=nl.sbuf)
        nisa.dma_copy(dst=x_rows[0:rows, :], src=x[b, s0:s0 + rows, :])
        for c0 in range(0, ct, CB):
            nt = min(CB, ct - c0)
            ps = nl.ndarray((128, nt, rows), dtype=mm_dt, buffer=nl.psum)
            for j in range(nt):
                nisa.nc_transpose(ps[:, j, :], x_rows[0:rows, (c0 + j) * 128:(c0 + j + 1) * 128])
            nisa.tensor_copy(dst=hist[:, c0:c0 + nt, kk - 1 + s0:kk - 1 + s0 + rows], src=ps,
                             engine=nisa.engine.vector if (s0 // TOK + c0) % 2 else nisa.engine.scalar)
    return hist


def _new_state(hist, v_tile, state_out, b, ct, kk):
    """state_out[b] = hist[:, :, v : v + K-1] with v = valid_len[b] (a [1, 1] SBUF tile)
    read at run time as a dynamic DMA offset."""
    chans = ct * 128
    row = hist.shape[1] * hist.shape[2]
    src = hist.ap(pattern=[[row, 128], [hist.shape[2], ct], [1, kk - 1]], offset=0,
                  scalar_offset=v_tile, indirect_dim=2)
    nisa.dma_copy(dst=state_out.ap(pattern=[[kk - 1, 128], [128 * (kk - 1), ct], [1, kk - 1]],
                                   offset=b * chans * (kk - 1)), src=src)


@nki.jit
def causal_conv1d_cte(x, conv_state, weight, valid_len):
    """x [B, S, C]; conv_state [B, C, K-1]; weight [C, K]; valid_len [B] int32.
    Returns (silu(conv) [B, S, C] in x's dtype, new conv_state in its dtype)."""
    batch, seq, chans = x.shape
    kk = weight.shape[1]
    assert chans % 128 == 0, "causal_conv1d_cte: channels must be a multiple of 128"
    ct = chans // 128
    mm_dt = nl.float32 if x.dtype == nl.float32 else nl.bfloat16
    out = nl.ndarray((batch, seq, chans), dtype=x.dtype, buffer=nl.shared_hbm)
    state_out = nl.ndarray(conv_state.shape, dtype=conv_state.dtype, buffer=nl.shared_hbm)
    v_tiles = []
    for b in range(batch):  # tiny loads first: nothing waits behind the output stores
        v_tile = nl.ndarray((1, 1), dtype=nl.int32, buffer=nl.sbuf)
        nisa.dma_copy(dst=v_tile, src=valid_len[b:b + 1].reshape((1, 1)))
        v_tiles.append(v_tile)
    diag = _diag_weights(weight, ct, kk, mm_dt)
    for b in range(batch):
        hist = _history(x, conv_state, b, ct, kk, seq, mm_dt)
        for s0 in range(0, seq, TOK):
            rows = min(TOK, seq - s0)
            for c0 in range(0, ct, CB):
                nt = min(CB, ct - c0)
                ps = nl.ndarray((TOK, nt * 128), dtype=nl.float32, buffer=nl.psum)
                for j in range(nt):
                    for k in range(kk):
                        nisa.nc_matmul(ps[:, j * 128:(j + 1) * 128], hist[:, c0 + j, s0 + k:s0 + k + TOK],
                                       diag[:, c0 + j, k, :], accumulate=k > 0)
                y = nl.ndarray((TOK, nt * 128), dtype=x.dtype, buffer=nl.sbuf)
                nisa.activation(dst=y, op=nl.silu, data=ps)
                nisa.dma_copy(dst=out[b, s0:s0 + rows, c0 * 128:(c0 + nt) * 128], src=y[0:rows, :])
        _new_state(hist, v_tiles[b], state_out, b, ct, kk)
    return out, state_out


@nki.jit
def causal_conv1d_tkg(x, conv_state, weight, valid_len):
    """One decode token: x [B, 1, C]; conv_state [B, C, K-1]; weight [C, K]; valid_len [B]
    (0 or 1). Same results as causal_conv1d_cte / the twin for S = 1."""
    batch, seq, chans = x.shape
    kk = weight.shape[1]
    assert seq == 1, "causal_conv1d_tkg: one token per row (use causal_conv1d_cte otherwise)"
    assert chans % 128 == 0, "causal_conv1d_tkg: channels must be a multiple of 128"
    per = chans // 128  # channels c = p * per + j live on partition p
    out = nl.ndarray((batch, seq, chans), dtype=x.dtype, buffer=nl.shared_hbm)
    state_out = nl.ndarray(conv_state.shape, dtype=conv_state.dtype, buffer=nl.shared_hbm)
    # contiguous loads (one run per partition), then one on-chip copy assembles the history
    st = nl.ndarray((128, batch, per, kk - 1), dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=st, src=conv_state.ap(pattern=[[per * (kk - 1), 128], [chans * (kk - 1), batch],
                                                     [kk - 1, per], [1, kk - 1]], offset=0))
    xt = nl.ndarray((128, batch, per, 1), dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=xt, src=x.ap(pattern=[[per, 128], [chans, batch], [1, per], [1, 1]], offset=0))
    hist = nl.ndarray((128, batch, per, kk), dtype=x.dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=hist[:, :, :, 0:kk - 1], src=st, engine=nisa.engine.gpsimd)
    nisa.tensor_copy(dst=hist[:, :, :, kk - 1:kk], src=xt, engine=nisa.engine.gpsimd)
    w = nl.ndarray((128, 1, per, kk), dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=w, src=weight.ap(pattern=[[per * kk, 128], [0, 1], [kk, per], [1, kk]], offset=0))
    prod = nl.ndarray((128, batch, per, kk), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=prod, data1=hist, data2=w.broadcast(1, batch), op=nl.multiply)
    acc = nl.ndarray((128, batch, per), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=acc, op=nl.add, data=prod, axis=3)
    y = nl.ndarray((128, batch, per), dtype=x.dtype, buffer=nl.sbuf)
    nisa.activation(dst=y, op=nl.silu, data=acc)
    nisa.dma_copy(dst=out.ap(pattern=[[per, 128], [chans, batch], [1, per]], offset=0), src=y)
    # new state: h[1:K] v + h[0:K-1] (1 - v), exact for v in {0, 1} (x*1, x*0, x + 0)
    v_all = nl.ndarray((128, batch), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=v_all, src=valid_len.ap(pattern=[[0, 128], [1, batch]], offset=0))
    keep = nl.ndarray((128, batch), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=keep, data=v_all, op0=nl.multiply, operand0=-1.0, op1=nl.add, operand1=1.0)
    shape = (128, batch, per, kk - 1)
    moved = nl.ndarray(shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=moved, data1=hist[:, :, :, 1:kk],
                       data2=v_all.reshape((128, batch, 1, 1)).broadcast(2, per).broadcast(3, kk - 1),
                       op=nl.multiply, engine=nisa.engine.gpsimd)
    kept = nl.ndarray(shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=kept, data1=hist[:, :, :, 0:kk - 1],
                       data2=keep.reshape((128, batch, 1, 1)).broadcast(2, per).broadcast(3, kk - 1),
                       op=nl.multiply, engine=nisa.engine.gpsimd)
    new = nl.ndarray(shape, dtype=conv_state.dtype, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=new, data1=moved, data2=kept, op=nl.add)
    nisa.dma_copy(dst=state_out.ap(pattern=[[per * (kk - 1), 128], [chans * (kk - 1), batch],
                                            [kk - 1, per], [1, kk - 1]], offset=0), src=new)
    return out, state_out
