"""Causal GQA flash attention for head_dim 256 (prefill), as an NKI kernel.

Twin: `qwen35_neuron.model.attention_core.causal_gqa_attention` (same arguments and layouts):
q [B, Hq, S, D], k, v [B, Hkv, T, D], q_positions [B, S] (int), scale -> [B, Hq, S, D] in
q's dtype. Key slot j is visible to a query at position p iff j <= p; that one rule covers
a fresh prompt, a chunked-prefill continuation and right padding.

No public NKI kernel covers head_dim 256 (nki-library's attention_cte asserts d <= 128).
Here the 256-wide contraction is two 128-partition passes accumulated in one PSUM bank:
  S[q, j] = Q0^T K0 + Q1^T K1            (Q^T, K^T: d on partitions, from TensorE transposes)
Per (q tile of 128 rows, head), keys go in sections of up to SECTION tiles of 512: a section's
scores stay in PSUM (one bank per tile); the section max comes first, then one exp pass
(ScalarE, -max folded in, row sums accumulated; the scale rides on Q^T), P^T by TensorE
transposes, and
P V accumulated over the whole section in one PSUM tile - so there is no per-tile rescale
of the output, only one merge per section (online softmax across sections, stats in fp32).
The mask is additive (-1e30 where j > position), built once per (q tile, key tile) and shared
by the heads of a KV group, and added in PSUM by TensorE (identity @ mask) so VectorE only
reads the scores once (for the max); a tile every row fully sees needs none.

Positions: with `causal_offset` >= 0 the caller promises q_positions[b, s] == causal_offset + s
(a prompt written at causal_offset, e.g. 0 for context encoding): key tiles above the diagonal
are skipped and fully visible tiles go unmasked, statically. With causal_offset = -1 (the
default, always correct) positions are read from q_positions at run time and every key tile
is scanned and masked - the positions of a chunked-prefill continuation are data.
K^T and V of a (row, KV head) stay in SBUF for all T keys (8 T bytes per partition in bf16).
"""

import nki
import nki.isa as nisa
import nki.language as nl

from .kernel_utils import constant_identity

QT = 128  # query rows per tile
KT = 512  # keys per tile (one PSUM bank of fp32 scores)
SECTION = 3  # key tiles whose scores stay in PSUM together (2 sections in flight)
NEG = -1.0e30
KV_RESIDENT_BYTES = 128 * 1024  # SBUF per partition K^T and V may hold
Q_AHEAD = 2  # q tiles whose rows are loaded before the current tile's compute and stores


def _my_share(items):
    n_prog = nl.num_programs(0) if nl.program_ndim() > 0 else 1
    pid = nl.program_id(0) if nl.program_ndim() > 0 else 0
    per = (len(items) + n_prog - 1) // n_prog
    return items[pid * per:(pid + 1) * per]


def _transpose_blocks(src, dst, n_blocks, parity):
    """dst[:, i, :] = src[:, i*128:(i+1)*128]^T for each 128-wide block of src: TensorE
    transposes into one PSUM bank, evicted by ScalarE or VectorE by parity. (nki-library's
    attention uses SBUF->SBUF DMA transposes for P; under our cost model, with 128 short
    descriptors and 1.3 us latency each, they cost far more than TensorE + one eviction.)"""
    rows = src.shape[0]
    ps = nl.ndarray((128, n_blocks, rows), dtype=src.dtype, buffer=nl.psum)
    for i in range(n_blocks):
        nisa.nc_transpose(ps[:, i, :], src[:, i * 128:(i + 1) * 128])
    nisa.tensor_copy(dst=dst[:, :, 0:rows], src=ps,
                     engine=nisa.engine.vector if parity % 2 else nisa.engine.scalar)


def _transpose_rows(rows, n_rows, d, dst):
    """dst[:, h, 0:n_rows] = rows[0:n_rows, h*128:(h+1)*128]^T for every 128-wide d slice."""
    _transpose_blocks(rows[0:n_rows, :], dst, d // 128, 1)


def _load_kv(k, v, b, kvh, seq_k, d, mm_dt, eye):
    """K^T [128, halves, T_pad] and V [128, tiles, d] (keys on partitions) in the matmul dtype;
    rows past T are zero."""
    halves = d // 128
    n_blk = (seq_k + 127) // 128
    t_pad = ((seq_k + KT - 1) // KT) * KT
    resident = 2 * t_pad * d // 128 * (2 if mm_dt == nl.bfloat16 else 4)
    assert resident <= KV_RESIDENT_BYTES, (
        f"flash_attention_d256: K^T and V of {seq_k} keys need {resident} B per partition, over "
        f"the {KV_RESIDENT_BYTES} B budget; split the keys into windows (<= 16K keys in bf16)")
    k_t = nl.ndarray((128, halves, t_pad), dtype=mm_dt, buffer=nl.sbuf)
    if t_pad > seq_k:
        nisa.memset(k_t, 0.0)
    v_sb = nl.ndarray((128, t_pad // 128, d), dtype=mm_dt, buffer=nl.sbuf)
    if t_pad > n_blk * 128 or seq_k % 128:
        nisa.memset(v_sb, 0.0)
    for blk in range(n_blk):
        rows = min(128, seq_k - blk * 128)
        k_rows = nl.ndarray((128, d), dtype=mm_dt, buffer=nl.sbuf)
        nisa.dma_copy(dst=k_rows[0:rows, :], src=k[b, kvh, blk * 128:blk * 128 + rows, :])
        _transpose_rows(k_rows, rows, d, k_t[:, :, blk * 128:blk * 128 + 128])
        nisa.dma_copy(dst=v_sb[0:rows, blk, :], src=v[b, kvh, blk * 128:blk * 128 + rows, :])
    return k_t, v_sb


def _positions(q_positions, b, s0, rows, causal_offset):
    """[128, 1] fp32 positions of the tile's query rows (static iota or loaded)."""
    pos = nl.ndarray((QT, 1), dtype=nl.float32, buffer=nl.sbuf)
    if causal_offset >= 0:
        nisa.iota(pos, pattern=[[0, 1]], offset=causal_offset + s0, channel_multiplier=1)
    else:
        if rows < QT:
            nisa.memset(pos, 0.0)
        nisa.dma_copy(dst=pos[0:rows, :], src=q_positions[b, s0:s0 + rows].reshape((rows, 1)))
    return pos


def _tile_plan(s0, n_kv_tiles, causal_offset):
    """Per key tile: 0 skip, 1 unmasked, 2 masked (static only when causal_offset >= 0)."""
    plan = []
    for t in range(n_kv_tiles):
        kv0 = t * KT
        if causal_offset < 0:
            plan.append(2)
        elif kv0 > causal_offset + s0 + QT - 1:
            plan.append(0)
        elif kv0 + KT - 1 <= causal_offset + s0:
            plan.append(1)
        else:
            plan.append(2)
    return plan


def _mask_bias(pos, iota, kv0, mm_dt):
    """[128, KT] additive mask in the matmul dtype: NEG where kv0 + j > position of the row
    (added to the scores in PSUM by an identity matmul; -1e30 is exact enough in bf16)."""
    rel = nl.ndarray((QT, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=rel, data=pos, op0=nl.subtract, operand0=float(kv0))
    bias = nl.ndarray((QT, KT), dtype=mm_dt, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=bias, data=iota, op0=nl.greater, operand0=rel, op1=nl.multiply,
                       operand1=NEG)
    return bias


def _scores(q_t, kv, tiles, plan, biases, eye):
    """Stage 1 of a section: scores of its key tiles in PSUM (mask added there; the softmax
    scale is already in Q^T) and minus the section's row max."""
    k_t = kv[0]
    halves = k_t.shape[1]
    n = len(tiles)
    scores = []
    maxes = nl.ndarray((QT, n), dtype=nl.float32, buffer=nl.sbuf)
    for i in range(n):
        t = tiles[i]
        s_ps = nl.ndarray((QT, KT), dtype=nl.float32, buffer=nl.psum)
        for h in range(halves):
            nisa.nc_matmul(s_ps, q_t[:, h, :], k_t[:, h, t * KT:(t + 1) * KT],
                           accumulate=h > 0)
        if plan[t] == 2:  # the mask joins the PSUM accumulation: I @ bias (a 0/1 stationary)
            nisa.nc_matmul(s_ps, eye, biases[t], is_stationary_onezero=True, accumulate=True)
        nisa.tensor_reduce(dst=maxes[:, i:i + 1], op=nl.maximum, data=s_ps, axis=1, negate=n == 1)
        scores.append(s_ps)
    if n == 1:
        return scores, maxes
    neg_m = nl.ndarray((QT, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=neg_m, op=nl.maximum, data=maxes, axis=1, negate=True)
    return scores, neg_m


def _probs_values(scores, neg_m, kv, tiles):
    """Stage 2 of a section: P = exp(S - m) with row sums (ScalarE), P^T by TensorE
    transposes, P V accumulated over the section in one PSUM tile. Returns (-m, l, P V)."""
    v_sb = kv[1]
    mm_dt, d = v_sb.dtype, v_sb.shape[2]
    n = len(tiles)
    sums = nl.ndarray((QT, n), dtype=nl.float32, buffer=nl.sbuf)
    pv = nl.ndarray((QT, d), dtype=nl.float32, buffer=nl.psum)
    for i in range(n):
        t = tiles[i]
        p = nl.ndarray((QT, KT), dtype=mm_dt, buffer=nl.sbuf)
        nisa.activation(dst=p, op=nl.exp, data=scores[i], bias=neg_m,
                        reduce_op=nl.add, reduce_res=sums[:, i:i + 1],
                        reduce_cmd=nisa.reduce_cmd.reset_reduce)
        p_t = nl.ndarray((128, KT // 128, QT), dtype=mm_dt, buffer=nl.sbuf)
        _transpose_blocks(p, p_t, KT // 128, i)
        for blk in range(KT // 128):
            nisa.nc_matmul(pv, p_t[:, blk, :], v_sb[:, t * (KT // 128) + blk, :],
                           accumulate=not (i == 0 and blk == 0))
    if n == 1:
        return neg_m, sums, pv
    l_sec = nl.ndarray((QT, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=l_sec, op=nl.add, data=sums, axis=1)
    return neg_m, l_sec, pv


def _merge(acc, sec):
    """Online-softmax merge of a section into the running (-m, l, o) (fp32)."""
    nm_a, l_a, o_a = acc
    nm_s, l_s, o_s = sec
    nm_n = nl.ndarray((QT, 1), dtype=nl.float32, buffer=nl.sbuf)  # -max(m_a, m_s)
    nisa.tensor_tensor(dst=nm_n, data1=nm_a, data2=nm_s, op=nl.minimum)
    fa = nl.ndarray((QT, 1), dtype=nl.float32, buffer=nl.sbuf)
    fs = nl.ndarray((QT, 1), dtype=nl.float32, buffer=nl.sbuf)
    for f, nm_x in ((fa, nm_a), (fs, nm_s)):  # f = exp(m_x - m_n)
        nisa.tensor_tensor(dst=f, data1=nm_n, data2=nm_x, op=nl.subtract)
        nisa.activation(dst=f, op=nl.exp, data=f)
    l_n = nl.ndarray((QT, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=l_n, data1=l_a, data2=fa, op=nl.multiply)
    nisa.scalar_tensor_tensor(dst=l_n, data=l_s, op0=nl.multiply, operand0=fs, op1=nl.add,
                              operand1=l_n)
    o_n = nl.ndarray((QT, o_a.shape[1]), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=o_n, data=o_a, op0=nl.multiply, operand0=fa)
    nisa.scalar_tensor_tensor(dst=o_n, data=o_s, op0=nl.multiply, operand0=fs, op1=nl.add,
                              operand1=o_n)
    return nm_n, l_n, o_n


def _load_q_rows(q, b, heads, s0, rows, mm_dt):
    """Raw rows of one q tile for the given heads (zero rows past the end)."""
    d = q.shape[3]
    tiles = []
    for qh in heads:
        q_rows = nl.ndarray((QT, d), dtype=mm_dt, buffer=nl.sbuf)
        if rows < QT:
            nisa.memset(q_rows, 0.0)
        nisa.dma_copy(dst=q_rows[0:rows, :], src=q[b, qh, s0:s0 + rows, :])
        tiles.append(q_rows)
    return tiles


def _q_transposed(q_rows, mm_dt, scale):
    """scale * Q^T [128, halves, QT] of one (q tile, head) in the matmul dtype (the softmax
    scale rides on the PSUM eviction; exact for the usual power-of-two 1/sqrt(256))."""
    d = q_rows.shape[1]
    ps = nl.ndarray((128, d // 128, QT), dtype=mm_dt, buffer=nl.psum)
    for h in range(d // 128):
        nisa.nc_transpose(ps[:, h, :], q_rows[:, h * 128:(h + 1) * 128])
    q_t = nl.ndarray((128, d // 128, QT), dtype=mm_dt, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=q_t, data=ps, op0=nl.multiply, operand0=scale)
    return q_t


def _finish(acc, out, b, qh, s0, rows):
    """out rows = (P V) / l in the output dtype (ScalarE scale; straight from PSUM when the
    unit had one section)."""
    m, l_tot, o = acc
    recip = nl.ndarray((QT, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.reciprocal(dst=recip, data=l_tot)
    o_out = nl.ndarray((QT, o.shape[1]), dtype=out.dtype, buffer=nl.sbuf)
    nisa.activation(dst=o_out, op=nl.copy, data=o, scale=recip)
    nisa.dma_copy(dst=out[b, qh, s0:s0 + rows, :], src=o_out[0:rows, :])


def _stage2(item, first, out):
    """Stage 2 of a work item; merges into the unit's running state; finishes the unit."""
    unit, tiles, last, scores, m, kv, acc = item
    b, qh, s0, rows, n_sections = unit
    sec = _probs_values(scores, m, kv, tiles)
    if n_sections > 1:  # merge in SBUF
        pv_sb = nl.ndarray((QT, sec[2].shape[1]), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=pv_sb, src=sec[2], engine=nisa.engine.scalar)
        sec = (sec[0], sec[1], pv_sb)
    acc = sec if first else _merge(acc, sec)
    if last:
        _finish(acc, out, b, qh, s0, rows)
        return ()
    return acc


def _attention(q, k, v, q_positions, scale, causal_offset):
    batch, heads, seq_q, d = q.shape
    kv_heads, seq_k = k.shape[1], k.shape[2]
    assert d % 128 == 0 and d <= 512, "flash_attention_d256: head_dim must be 128, 256, ..."
    assert heads % kv_heads == 0, "flash_attention_d256: query heads must be a multiple of KV heads"
    group = heads // kv_heads
    out = nl.ndarray((batch, heads, seq_q, d), dtype=q.dtype, buffer=nl.shared_hbm)
    mm_dt = nl.float32 if q.dtype == nl.float32 else nl.bfloat16
    eye = constant_identity(128, mm_dt)
    iota = nl.ndarray((QT, KT), dtype=nl.float32, buffer=nl.sbuf)
    nisa.iota(iota, pattern=[[1, KT]], offset=0, channel_multiplier=0)
    n_kv = (seq_k + KT - 1) // KT
    # work items = (q tile, head, section); two-stage pipeline: stage 1 (Q^T, scores, max)
    # of item i+1 is emitted before stage 2 (exp, P^T, P V, merge) of item i
    pending = ()
    acc = ()
    for b, kvh in _my_share([(b, h) for b in range(batch) for h in range(kv_heads)]):
        kv = _load_kv(k, v, b, kvh, seq_k, d, mm_dt, eye)
        heads_g = [kvh * group + g for g in range(group)]
        starts = list(range(0, seq_q, QT))
        q_raw = [None] * len(starts)
        for qi in range(min(Q_AHEAD, len(starts))):  # loads run ahead of the output stores
            q_raw[qi] = _load_q_rows(q, b, heads_g, starts[qi], min(QT, seq_q - starts[qi]), mm_dt)
        for qi in range(len(starts)):
            s0 = starts[qi]
            rows = min(QT, seq_q - s0)
            if qi + Q_AHEAD < len(starts):
                nxt = starts[qi + Q_AHEAD]
                q_raw[qi + Q_AHEAD] = _load_q_rows(q, b, heads_g, nxt, min(QT, seq_q - nxt), mm_dt)
            plan = _tile_plan(s0, n_kv, causal_offset)
            pos = _positions(q_positions, b, s0, rows, causal_offset)
            biases = [_mask_bias(pos, iota, t * KT, mm_dt) if plan[t] == 2 else None
                      for t in range(n_kv)]
            live = [t for t in range(n_kv) if plan[t] > 0]
            sections = [live[c0:c0 + SECTION] for c0 in range(0, len(live), SECTION)]
            for g in range(group):
                unit = (b, heads_g[g], s0, rows, len(sections))
                q_t = _q_transposed(q_raw[qi][g], mm_dt, scale)
                for si in range(len(sections)):
                    scores, m = _scores(q_t, kv, sections[si], plan, biases, eye)
                    if len(pending) > 0:
                        acc = _stage2(pending[0], pending[1], out)
                        pending = ()
                    prev_acc = acc if si > 0 else ()
                    pending = ((unit, sections[si], si == len(sections) - 1, scores, m, kv,
                                prev_acc), si == 0)
            q_raw[qi] = None
    if len(pending) > 0:
        _stage2(pending[0], pending[1], out)
    return out


@nki.jit
def flash_attention_d256(q, k, v, q_positions, scale, causal_offset=-1):
    """q [B, Hq, S, D]; k, v [B, Hkv, T, D]; q_positions [B, S] int; scale float;
    causal_offset >= 0 only when q_positions == causal_offset + arange(S) (static skipping).
    Returns [B, Hq, S, D] in q's dtype, equal to causal_gqa_attention."""
    return _attention(q, k, v, q_positions, scale, causal_offset)
