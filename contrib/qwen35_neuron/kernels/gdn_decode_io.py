"""HBM side of the gated-delta-rule decode kernel (gdn_decode.py): access patterns of a
group's rows, columns and states, the per-group loads, gate folding and the output store
(through the gated RMSNorm for the fused entry point). Sub-kernels: no @nki.jit of their own.
"""

import nki.isa as nisa
import nki.language as nl

from .kernel_utils import PSUM_FMAX


def _programs():
    """Programs of the launch grid (LNC): 1 without a grid."""
    return nl.num_programs(0) if nl.program_ndim() > 0 else 1


def _my_groups(groups):
    """This program's share of the groups (LNC=2 splits them; LNC=1 takes all)."""
    n_prog = _programs()
    pid = nl.program_id(0) if nl.program_ndim() > 0 else 0
    per = (len(groups) + n_prog - 1) // n_prog
    return groups[pid * per:(pid + 1) * per]


def _rows(src, grp, t, heads, hdim, rep):
    """HBM view of [G, hdim] rows src[b, t, head(h), :] for a group (GQA: head(h) = h // rep)."""
    b0, nb, h0, hb = grp
    seq = src.shape[1]
    if rep == 1:
        pat = [[seq * heads * hdim, nb], [hdim, hb], [1, hdim]]
    elif hb % rep == 0:
        pat = [[seq * heads * hdim, nb], [hdim, hb // rep], [0, rep], [1, hdim]]
    else:  # the whole group reads one key head
        pat = [[seq * heads * hdim, nb], [0, hb], [1, hdim]]
    return src.ap(pattern=pat, offset=b0 * seq * heads * hdim + t * heads * hdim + (h0 // rep) * hdim)


def _col(src, grp, t, heads):
    """HBM view of the [G] scalars src[b, t, h] of a group."""
    b0, nb, h0, hb = grp
    seq = src.shape[1]
    return src.ap(pattern=[[seq * heads, nb], [1, hb]], offset=b0 * seq * heads + t * heads + h0)


def _state_view(state, grp, n0, nh, dk, dv):
    """HBM view [K, (head, V)] of heads n0 .. n0+nh-1 (flattened (row, head) order) of a group:
    either a run of heads inside one row or a run of whole rows."""
    b0, nb, h0, hb = grp
    heads = state.shape[1]
    if n0 % hb + nh <= hb:
        pat = [[dv, dk], [dk * dv, nh], [1, dv]]
    else:
        assert n0 % hb == 0 and nh % hb == 0, "state chunks must be whole rows or inside a row"
        pat = [[dv, dk], [heads * dk * dv, nh // hb], [dk * dv, hb], [1, dv]]
    return state.ap(pattern=pat, offset=((b0 + n0 // hb) * heads + h0 + n0 % hb) * dk * dv)


def _bank_chunks(grp, dv):
    """(first head, heads) pieces of a group that fill one PSUM bank of rank-1 updates."""
    hb, g_rows = grp[3], grp[1] * grp[3]
    per_bank = max(1, PSUM_FMAX // dv)
    size = per_bank if hb >= per_bank else hb * (per_bank // hb)
    return [(n0, min(size, g_rows - n0)) for n0 in range(0, g_rows, size)]


def _load_col(src_view, g_rows):
    tile = nl.ndarray((g_rows, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=tile, src=src_view)
    return tile


def _bcast(src, grp, t, heads, dk):
    """[dk, G] tile whose every partition holds the group's scalars src[b, t, h] (a DMA with
    partition stride 0: per-head scales must reach all K partitions of the state)."""
    b0, nb, h0, hb = grp
    seq = src.shape[1]
    tile = nl.ndarray((dk, nb * hb), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=tile, src=src.ap(pattern=[[0, dk], [seq * heads, nb], [1, hb]],
                                       offset=b0 * seq * heads + t * heads + h0))
    return tile


def _gates_plain(g, beta, grp, t, heads, g_rows, dk):
    """(g column, g on all partitions, beta column) as given (the twin's interface)."""
    return (_load_col(_col(g, grp, t, heads), g_rows), _bcast(g, grp, t, heads, dk),
            _load_col(_col(beta, grp, t, heads), g_rows))


def _raw_decay(a_t, alog_t, dt_t, shape):
    """g = -exp(A_log) softplus(a + dt_bias) element-wise on one layout."""
    pre = nl.ndarray(shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=pre, data1=a_t, data2=dt_t, op=nl.add)
    soft = nl.ndarray(shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=soft, op=nl.softplus, data=pre)
    rate = nl.ndarray(shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=rate, op=nl.exp, data=alog_t)
    g_t = nl.ndarray(shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.scalar_tensor_tensor(dst=g_t, data=soft, op0=nl.multiply, operand0=-1.0,
                              op1=nl.multiply, operand1=rate)
    return g_t


def _gates_raw(a, b, a_log, dt_bias, grp, t, heads, g_rows, dk):
    """g = -exp(A_log) softplus(a + dt_bias), beta = sigmoid(b), folded in (gdn_tkg's
    interface); g both as a column and on all K partitions."""
    _, nb, h0, hb = grp
    per_head = [[0, nb], [1, hb]]
    col = _raw_decay(_load_col(_col(a, grp, t, heads), g_rows),
                     _load_col(a_log.ap(pattern=per_head, offset=h0), g_rows),
                     _load_col(dt_bias.ap(pattern=per_head, offset=h0), g_rows), (g_rows, 1))
    per_part = [[0, dk], [0, nb], [1, hb]]
    alog_all = nl.ndarray((dk, g_rows), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=alog_all, src=a_log.ap(pattern=per_part, offset=h0))
    dt_all = nl.ndarray((dk, g_rows), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=dt_all, src=dt_bias.ap(pattern=per_part, offset=h0))
    every = _raw_decay(_bcast(a, grp, t, heads, dk), alog_all, dt_all, (dk, g_rows))
    beta_col = nl.ndarray((g_rows, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=beta_col, op=nl.sigmoid, data=_load_col(_col(b, grp, t, heads), g_rows))
    return col, every, beta_col


def _gates(gate_inputs, grp, t, heads, g_rows, dk):
    """(g column, g on all K partitions, beta column): given directly (2 inputs) or from the
    raw projections (4 inputs)."""
    if len(gate_inputs) == 2:
        return _gates_plain(gate_inputs[0], gate_inputs[1], grp, t, heads, g_rows, dk)
    a, b, a_log, dt_bias = gate_inputs
    return _gates_raw(a, b, a_log, dt_bias, grp, t, heads, g_rows, dk)


def _gated_rms_norm(o, z_view, nw_view, eps, dv, g_rows, out_dtype):
    """(o / rms(o)) * w * silu(z) over each row (the gated RMSNorm of gdn_tkg), fp32 math."""
    zt = nl.ndarray((g_rows, dv), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=zt, src=z_view)
    nw = nl.ndarray((g_rows, dv), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=nw, src=nw_view)
    sq = nl.ndarray((g_rows, dv), dtype=nl.float32, buffer=nl.sbuf)
    ss = nl.ndarray((g_rows, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation_reduce(dst=sq, op=nl.square, data=o, reduce_op=nl.add, reduce_res=ss)
    rstd = nl.ndarray((g_rows, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=rstd, op=nl.rsqrt, data=ss, scale=1.0 / dv, bias=eps)
    gate = nl.ndarray((g_rows, dv), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=gate, op=nl.silu, data=zt)
    normed = nl.ndarray((g_rows, dv), dtype=nl.float32, buffer=nl.sbuf)
    nisa.scalar_tensor_tensor(dst=normed, data=o, op0=nl.multiply, operand0=rstd,
                              op1=nl.multiply, operand1=nw)
    y = nl.ndarray((g_rows, dv), dtype=out_dtype, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=y, data1=normed, data2=gate, op=nl.multiply)
    return y


def _store_out(o, out_spec, t, dv, g_rows):
    """Write a token's rows, through the gated RMSNorm when the fused entry point asked."""
    out, grp, heads, norm_inputs = out_spec
    if len(norm_inputs) == 3:
        z, norm_weight, eps = norm_inputs
        nw_view = norm_weight.ap(pattern=[[0, g_rows], [1, dv]], offset=0)
        o = _gated_rms_norm(o, _rows(z, grp, t, heads, dv, 1), nw_view, eps, dv, g_rows, out.dtype)
    nisa.dma_copy(dst=_rows(out, grp, t, heads, dv, 1), src=o)


def _load_group(load_args, grp):
    """All loads of a group: per-token rows first (small), then the state in per-bank pieces."""
    q, k, v, gate_inputs, state, seq, dims = load_args
    kheads, heads, dk, dv, rep = dims
    g_rows = grp[1] * grp[3]
    toks = []
    for t in range(seq):
        k_rows = nl.ndarray((g_rows, dk), dtype=nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=k_rows, src=_rows(k, grp, t, kheads, dk, rep))
        q_rows = nl.ndarray((g_rows, dk), dtype=nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=q_rows, src=_rows(q, grp, t, kheads, dk, rep))
        v_rows = nl.ndarray((g_rows, dv), dtype=nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=v_rows, src=_rows(v, grp, t, heads, dv, 1))
        g_col, g_all, beta_col = _gates(gate_inputs, grp, t, heads, g_rows, dk)
        toks.append((k_rows, q_rows, v_rows, g_col, g_all, beta_col))
    chunks = []
    for n0, nh in _bank_chunks(grp, dv):
        tile = nl.ndarray((dk, nh * dv), dtype=nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=tile, src=_state_view(state, grp, n0, nh, dk, dv))
        chunks.append(tile)
    return chunks, toks
