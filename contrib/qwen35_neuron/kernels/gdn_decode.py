"""Gated delta rule, decode (TKG): T = 1 (or k speculative) tokens per (row, value head), NKI.

Twin: `qwen35_neuron.model.gated_delta_rule.recurrent_gated_delta_rule` (same arguments, same
layouts, same results). `gdn_decode_fused` also folds the gates and the gated RMSNorm; its twin
is `qwen35_neuron.kernels.gdn_fused_twin.fused_decode_reference`.

Layout and algorithm (per group of G <= 16 (row, head) pairs, all in one launch):
- the fp32 states of the group sit in SBUF as S[k, (n, v)] (K on partitions, heads side by side
  on the free axis) for all T steps; HBM sees one load and one store per state;
- q/k/v rows are loaded head-per-partition ([G, D]); L2 norms, exp(g), beta and the scalars
  below are per-partition column ops on those rows (cheap: free size D);
- both reductions read the *old* state with the state as the TensorE stationary and a
  two-column moving operand (N = 2, the cheapest matmul there is):
      [kv_n, r_n] = S_n^T [a_n, w_n],  a_n = e^g k_n,  w_n = e^g (q_n - c_n k_n),  c_n = beta k.q
  because S'^T q = e^g S^T q + delta (k.q) with delta = beta (v - e^g S^T k), so
      delta = beta v - beta kv,   out = r + c v      (no second pass over the new state);
- the rank-1 updates k_n delta_n^T of all heads come from TensorE, contracting over the G
  rows with a stationary whose only non-zero row is n (built on GpSimd);
- the decay e^g S runs on ScalarE (a per-head scale); S' = e^g S + U is accumulated in PSUM
  through an fp32 identity (a 0/1 operand) for half of the banks and added by VectorE for
  the other half, which balances TensorE and VectorE;
- LNC 2: the (row, head) pairs are split evenly over the two programs (rows, or each row's heads
  when the batch is odd), each program a share of the groups, as nki-library's gdn_tkg splits BH;
- groups and tokens run as a four-stage software pipeline (prepare / reduce / update
  matmuls / evict), loads several groups ahead, because every engine executes its
  instruction stream in order.
All state math is fp32 (matmuls included): no bf16 copy of the state is ever made.
"""

import math

import nki
import nki.isa as nisa
import nki.language as nl

from .gdn_decode_io import _bank_chunks, _load_group, _my_groups, _programs, _state_view, _store_out
from .kernel_utils import block_diag_select, constant_identity

L2_EPS = 1e-6
MAX_GROUP = 16  # (row, head) pairs per group: 4 PSUM banks of rank-1 updates at Dv = 128
PREFETCH_BYTES = 64 * 1024  # SBUF per partition that prefetched groups may hold
LEAD = 2  # pipeline distance (items) between a token's prepare and its reduce stage


def plan_groups(batch, heads, rep, max_group=MAX_GROUP, programs=1):
    """Groups (b0, rows, h0, heads) covering the (row, head) grid; heads a multiple of rep.

    With programs > 1 (LNC 2) the grid is cut so that contiguous shares of the list are equal, as
    nki-library's gdn_tkg splits its BH axis: whole rows per program when the batch divides evenly,
    else every row's heads split (head block first: a batch of one uses both cores)."""
    hb = heads if heads <= max_group else max_group
    split = hb // programs
    by_heads = programs > 1 and batch % programs and hb % programs == 0 and (split % rep == 0 or rep % split == 0)
    if by_heads:
        hb = split
    assert heads % hb == 0 and (hb % rep == 0 or rep % hb == 0), "groups must tile GQA groups"
    nb = max(1, max_group // hb)
    if programs > 1 and batch % programs == 0:
        nb = min(nb, batch // programs)
    cells = [(b0, h0) for b0 in range(0, batch, nb) for h0 in range(0, heads, hb)]
    if by_heads:
        cells.sort(key=lambda cell: cell[1])
    return [(b0, min(nb, batch - b0), h0, hb) for b0, h0 in cells]


def _scale_rows(dst, rows, col):
    """dst = rows * col (a per-row scalar) on GpSimd, keeping VectorE free for the state."""
    nisa.tensor_tensor(dst=dst, data1=rows, data2=col.broadcast(1, rows.shape[1]), op=nl.multiply,
                       engine=nisa.engine.gpsimd)


def _norms(k_rows, q_rows, dk, g_rows):
    """[G, 2] inverse L2 norms of the k and q rows, and [G, 1] raw k.q (GpSimd + VectorE)."""
    sq = nl.ndarray((g_rows, 2, dk), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=sq[:, 0, :], data1=k_rows, data2=k_rows, op=nl.multiply,
                       engine=nisa.engine.gpsimd)
    nisa.tensor_tensor(dst=sq[:, 1, :], data1=q_rows, data2=q_rows, op=nl.multiply,
                       engine=nisa.engine.gpsimd)
    prod = nl.ndarray((g_rows, dk), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=prod, data1=k_rows, data2=q_rows, op=nl.multiply,
                       engine=nisa.engine.gpsimd)
    ss = nl.ndarray((g_rows, 2), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=ss, op=nl.add, data=sq, axis=2)
    kq = nl.ndarray((g_rows, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=kq, op=nl.add, data=prod, axis=1)
    inv = nl.ndarray((g_rows, 2), dtype=nl.float32, buffer=nl.sbuf)  # 1/|k|, 1/|q|
    nisa.activation(dst=inv, op=nl.rsqrt, data=ss, bias=L2_EPS)
    return inv, kq


def _row_scalars(inv, kq, eg, beta_col, dk, g_rows):
    """[G, 4] per-row scalars: s0 = e^g/|k|, s1 = e^g/(|q| sqrt(dk)), s2 = -c s0, s3 = c,
    where c = beta (k.q)/(|k||q| sqrt(dk)) = beta k^.q^ with the scaled unit query q^."""
    qscale = 1.0 / math.sqrt(dk)
    s = nl.ndarray((g_rows, 4), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=s[:, 0:1], data1=inv[:, 0:1], data2=eg, op=nl.multiply)
    nisa.scalar_tensor_tensor(dst=s[:, 1:2], data=inv[:, 1:2], op0=nl.multiply, operand0=qscale,
                              op1=nl.multiply, operand1=eg)
    nisa.scalar_tensor_tensor(dst=s[:, 3:4], data=kq, op0=nl.multiply, operand0=inv[:, 0:1],
                              op1=nl.multiply, operand1=inv[:, 1:2])
    nisa.scalar_tensor_tensor(dst=s[:, 3:4], data=s[:, 3:4], op0=nl.multiply, operand0=qscale,
                              op1=nl.multiply, operand1=beta_col)
    nisa.scalar_tensor_tensor(dst=s[:, 2:3], data=s[:, 3:4], op0=nl.multiply, operand0=-1.0,
                              op1=nl.multiply, operand1=s[:, 0:1])
    return s


def _aw_rows(k_rows, q_rows, s, dk, g_rows):
    """The moving operands on rows: a = s0 k and w = s1 q + s2 k, as [G, 2, dk]."""
    aw_rows = nl.ndarray((g_rows, 2, dk), dtype=nl.float32, buffer=nl.sbuf)
    _scale_rows(aw_rows[:, 0, :], k_rows, s[:, 0:1])
    q_part = nl.ndarray((g_rows, dk), dtype=nl.float32, buffer=nl.sbuf)
    _scale_rows(q_part, q_rows, s[:, 1:2])
    nisa.scalar_tensor_tensor(dst=aw_rows[:, 1, :], data=k_rows, op0=nl.multiply,
                              operand0=s[:, 2:3], op1=nl.add, operand1=q_part)
    return aw_rows


def _transpose_pair(aw_rows, dk, g_rows):
    """[G, 2, dk] rows -> SBUF [dk, G, 2]: each head's (a, w) columns side by side."""
    aw_t = nl.ndarray((dk, 2, g_rows), dtype=nl.float32, buffer=nl.psum)
    nisa.nc_transpose(aw_t[:, 0, :], aw_rows[:, 0, :])
    nisa.nc_transpose(aw_t[:, 1, :], aw_rows[:, 1, :])
    aw = nl.ndarray((dk, g_rows, 2), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=aw, src=aw_t.permute((0, 2, 1)))
    return aw


def _reduce_old_state(chunks, pieces, aw, dv, g_rows):
    """SBUF [dv, G, 2] with [:, n, :] = S_n^T [a_n, w_n] (state stationary, N = 2)."""
    red = nl.ndarray((dv, g_rows, 2), dtype=nl.float32, buffer=nl.psum)
    for c in range(len(pieces)):
        n0, nh = pieces[c]
        for j in range(nh):
            nisa.nc_matmul(red[:, n0 + j, :], chunks[c][:, nl.ds(j * dv, dv)], aw[:, n0 + j, :],
                           accumulate=False)
    red_sb = nl.ndarray((dv, g_rows, 2), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=red_sb, src=red)
    return red_sb


def _delta_and_out(red_sb, v_rows, beta_col, c_col, dv, g_rows):
    """Row layout again: delta = beta v - beta kv and out = r + c v, both [G, dv] fp32."""
    rows = nl.ndarray((g_rows, 2, dv), dtype=nl.float32, buffer=nl.psum)
    nisa.nc_transpose(rows[:, 0, :], red_sb[:, :, 0])
    nisa.nc_transpose(rows[:, 1, :], red_sb[:, :, 1])
    vb = nl.ndarray((g_rows, dv), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=vb, data=v_rows, op0=nl.multiply, operand0=beta_col)
    out_rows = nl.ndarray((g_rows, dv), dtype=nl.float32, buffer=nl.sbuf)
    nisa.scalar_tensor_tensor(dst=out_rows, data=v_rows, op0=nl.multiply, operand0=c_col,
                              op1=nl.add, operand1=rows[:, 1, :])
    delta = nl.ndarray((g_rows, dv), dtype=nl.float32, buffer=nl.sbuf)
    nisa.scalar_tensor_tensor(dst=delta, data=rows[:, 0, :], op0=nl.multiply, operand0=beta_col,
                              op1=nl.subtract, operand1=vb, reverse1=True)
    return delta, out_rows


def _decay(chunks, pieces, eg_all, dk, dv):
    """e^g_n S_n for every head, on ScalarE (a per-head scale from the broadcast e^g tile)."""
    decayed = []
    for c in range(len(pieces)):
        n0, nh = pieces[c]
        tile = nl.ndarray((dk, nh * dv), dtype=nl.float32, buffer=nl.sbuf)
        for j in range(nh):
            nisa.activation(dst=tile[:, nl.ds(j * dv, dv)], op=nl.copy,
                            data=chunks[c][:, nl.ds(j * dv, dv)], scale=eg_all[:, n0 + j:n0 + j + 1])
        decayed.append(tile)
    return decayed


def _piece_order(n_pieces):
    """Last piece first: odd pieces (slow VectorE add) start early and an even piece (fast
    ScalarE copy) finishes the item."""
    return [n_pieces - 1 - c for c in range(n_pieces)]


def _update_matmuls(decayed, pieces, k_sel, delta, eye, dk, dv):
    """Rank-1 updates k_n delta_n^T into one PSUM bank per piece (K = G contraction; the
    stationary's only non-zero row is n). Even pieces also accumulate e^g S through an fp32
    identity (a 0/1 operand: the cheap fp32 mode), odd pieces leave that add to VectorE:
    the split balances TensorE and VectorE."""
    banks = [None] * len(pieces)
    for c in _piece_order(len(pieces)):
        n0, nh = pieces[c]
        upd = nl.ndarray((dk, nh * dv), dtype=nl.float32, buffer=nl.psum)
        for j in range(nh):
            nisa.nc_matmul(upd[:, nl.ds(j * dv, dv)], k_sel[:, n0 + j, :], delta, accumulate=False)
        if c % 2 == 0:
            nisa.nc_matmul(upd, eye[0:dk, 0:dk], decayed[c], is_stationary_onezero=True,
                           accumulate=True)
        banks[c] = upd
    return banks


def _evict(banks, decayed, pieces, store, dk, dv):
    """S' pieces in SBUF: ScalarE copies the complete even banks, VectorE adds e^g S to the
    odd ones. After a group's last token each piece goes to HBM at once (store given)."""
    new_chunks = [None] * len(pieces)
    for c in _piece_order(len(pieces)):
        n0, nh = pieces[c]
        tile = nl.ndarray((dk, nh * dv), dtype=nl.float32, buffer=nl.sbuf)
        if c % 2 == 0:
            nisa.tensor_copy(dst=tile, src=banks[c], engine=nisa.engine.scalar)
        else:
            nisa.tensor_tensor(dst=tile, data1=decayed[c], data2=banks[c], op=nl.add)
        if len(store) == 2:
            nisa.dma_copy(dst=_state_view(store[0], store[1], n0, nh, dk, dv), src=tile)
        new_chunks[c] = tile
    return new_chunks


def _stage_prepare(tok, dk):
    """Stage 1, from the small per-token loads only (no TensorE): norms, per-row scalars, the
    moving operands on rows, e^g on every partition, the rank-1 stationaries (last: only
    stage 3 needs them; GpSimd builds them while the other engines go on)."""
    k_rows, q_rows, v_rows, g_col, g_all, beta_col = tok
    g_rows = k_rows.shape[0]
    eg = nl.ndarray((g_rows, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=eg, op=nl.exp, data=g_col)
    eg_all = nl.ndarray((dk, g_rows), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=eg_all, op=nl.exp, data=g_all)
    inv, kq = _norms(k_rows, q_rows, dk, g_rows)
    s = _row_scalars(inv, kq, eg, beta_col, dk, g_rows)
    aw_rows = _aw_rows(k_rows, q_rows, s, dk, g_rows)
    k_hat = nl.ndarray((g_rows, dk), dtype=nl.float32, buffer=nl.sbuf)
    _scale_rows(k_hat, k_rows, inv[:, 0:1])
    k_sel = nl.ndarray((g_rows, g_rows, dk), dtype=nl.float32, buffer=nl.sbuf)
    block_diag_select(k_sel, k_hat, g_rows)
    return aw_rows, s, k_sel, eg_all, v_rows, beta_col


def _stage_reduce(chunks, prep, out_spec, t, dk, dv, pieces):
    """Stage 2, needs the state: decays (ScalarE), reductions (TensorE), delta and the
    token's output rows (stored here)."""
    aw_rows, s, k_sel, eg_all, v_rows, beta_col = prep
    g_rows = k_sel.shape[0]
    aw = _transpose_pair(aw_rows, dk, g_rows)
    decayed = _decay(chunks, pieces, eg_all, dk, dv)
    red_sb = _reduce_old_state(chunks, pieces, aw, dv, g_rows)
    delta, out_rows = _delta_and_out(red_sb, v_rows, beta_col, s[:, 3:4], dv, g_rows)
    _store_out(out_rows, out_spec, t, dv, g_rows)
    return decayed, k_sel, delta


def _run_pipeline(groups, loaded, ahead, run, load_args):
    """Four-stage software pipeline over (group, token) items. Iteration j emits
    prepare(j), reduce(j-L), evict(j-L-2), matmuls(j-L-1) with L = LEAD: every in-order
    engine then has independent work queued behind a stage that waits, and at most two
    items hold PSUM banks of updates. A token's reduce needs the previous token's state
    (same group): that item's remaining stages are then emitted first."""
    seq = run[3]
    items = [(i, t) for i in range(len(groups)) for t in range(seq)]
    n = len(items)
    ctx = (groups, loaded, ahead, run, load_args, items,
           [[None, None, None] for _ in range(n)],  # prepare / reduce / matmul results
           [0] * n,  # stages emitted per item: 1 prepare, 2 reduce, 3 matmuls, 4 evict
           [None] * len(groups), [None] * len(groups))  # state pieces, token loads per group
    for j in range(n + LEAD + 2):
        for i, stage in ((j, 1), (j - LEAD, 2), (j - LEAD - 2, 4), (j - LEAD - 1, 3)):
            if 0 <= i < n and ctx[7][i] == stage - 1:
                _emit(ctx, i, stage)


def _emit(ctx, i, stage):
    """Emit one stage of pipeline item i (see _run_pipeline)."""
    groups, loaded, ahead, run, load_args, items, slots, done, state_of, toks_of = ctx
    consts, out_base, state_out, seq, dk, dv = run
    gi, t = items[i]
    pieces = _bank_chunks(groups[gi], dv)
    if stage == 1:
        if t == 0:
            if gi + ahead < len(groups):
                loaded[gi + ahead] = _load_group(load_args, groups[gi + ahead])
            state_of[gi], toks_of[gi] = loaded[gi]
            loaded[gi] = None
        slots[i][0] = _stage_prepare(toks_of[gi][t], dk)
    elif stage == 2:
        if t > 0:
            for s in range(done[i - 1] + 1, 5):
                _emit(ctx, i - 1, s)
        out_spec = (out_base[0], groups[gi], out_base[1], out_base[2])
        slots[i][1] = _stage_reduce(state_of[gi], slots[i][0], out_spec, t, dk, dv, pieces)
        slots[i][0] = None
    elif stage == 3:
        decayed, k_sel, delta = slots[i][1]
        slots[i][2] = _update_matmuls(decayed, pieces, k_sel, delta, consts[0], dk, dv)
    else:
        last = t == seq - 1
        store = (state_out, groups[gi]) if last else ()
        state_of[gi] = _evict(slots[i][2], slots[i][1][0], pieces, store, dk, dv)
        slots[i][0], slots[i][1], slots[i][2] = None, None, None
        if last:  # stored: free the group's SBUF
            state_of[gi], toks_of[gi] = None, None
    done[i] = stage


def _decode(q, k, v, gate_inputs, state, norm_inputs):
    """Shared body of both entry points; norm_inputs = () or (z, norm_weight, eps).

    Loads run `ahead` groups early (bounded by the SBUF they hold), so a DMA queue never
    waits behind a store that itself waits for compute."""
    batch, seq, kheads, dk = q.shape
    heads, dv = v.shape[2], v.shape[3]
    rep = heads // kheads
    assert dk <= 128 and dv <= 128, "gdn_decode: head dims must be <= 128"
    assert heads % kheads == 0, "gdn_decode: value heads must be a multiple of key heads"
    out_dtype = v.dtype if len(norm_inputs) == 3 else nl.float32
    out = nl.ndarray((batch, seq, heads, dv), dtype=out_dtype, buffer=nl.shared_hbm)
    state_out = nl.ndarray(state.shape, dtype=nl.float32, buffer=nl.shared_hbm)
    eye = constant_identity(128, nl.float32)
    consts = (eye, eye, eye)
    dims = (kheads, heads, dk, dv, rep)
    groups = _my_groups(plan_groups(batch, heads, rep, programs=_programs()))
    ahead = max(1, min(len(groups), PREFETCH_BYTES // (MAX_GROUP * dv * 4 * (1 + seq))))
    load_args = (q, k, v, gate_inputs, state, seq, dims)
    loaded = [None] * len(groups)
    for i in range(min(ahead, len(groups))):
        loaded[i] = _load_group(load_args, groups[i])
    run = (consts, (out, heads, norm_inputs), state_out, seq, dk, dv)
    _run_pipeline(groups, loaded, ahead, run, load_args)
    return out, state_out


@nki.jit
def gdn_decode(q, k, v, g, beta, state):
    """q, k [B, T, Hk, Dk]; v [B, T, Hv, Dv]; g, beta [B, T, Hv]; state [B, Hv, Dk, Dv] fp32.

    Returns (out [B, T, Hv, Dv] fp32, new state fp32), equal to recurrent_gated_delta_rule.
    """
    return _decode(q, k, v, (g, beta), state, ())


@nki.jit
def gdn_decode_fused(q, k, v, a, b, a_log, dt_bias, z, norm_weight, state, norm_eps):
    """gdn_tkg's interface: raw gate inputs a, b [B, T, Hv], A_log, dt_bias [Hv], gate z
    [B, T, Hv, Dv] and norm weight [Dv]. Returns (gated-RMSNormed out in v's dtype, new state).
    """
    return _decode(q, k, v, (a, b, a_log, dt_bias), state, (z, norm_weight, norm_eps))
