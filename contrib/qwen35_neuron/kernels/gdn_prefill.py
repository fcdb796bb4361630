"""Gated delta rule, chunked prefill (CTE), as an NKI kernel.

Twin: `qwen35_neuron.model.gated_delta_rule.chunked_gated_delta_rule` (same arguments and
layouts, same results; the chunk size is the kernel's own choice, the math does not depend on
it). One launch covers every (row, value head); LNC=2 splits the (row, key head) items.

The value-head states stay in SBUF (fp32, K on partitions) for the whole prompt: S tokens
cost ceil(S/C) chunk steps, C = 128 (the full partition dim: the C x C operators use the whole
PE array and the state update contracts over 128 tokens at once). Per chunk, with cumulative
gates c = cumsum(g) (a matmul with a triangular ones matrix) and D_ij = exp(c_i - c_j):
  key-head work, shared by its value heads: unit q/k rows, k^T, q^T, k k^T, k q^T;
  A = -beta_i (k k^T (.) D) strictly lower;  W^T = (I - A)^-T = prod_i (I + (A^T)^(2^i))
      by doubling: log2(C) rounds of matmuls tracking A^(2^i) and its transpose;
  v_new = W (beta v) - W (beta k e^c) S          (one PSUM accumulation)
  o     = (q e^c) S + (q k^T (.) D, incl. diag) v_new
  S    <- e^(c_last) S + (k e^(c_last - c))^T v_new
(math in gdn_prefill_chunk.py). Scheduling: a few (row, key head) items form a step group;
their value heads are packed on the free axis; (group, chunk) steps run as a three-stage
software pipeline (operators of step j+1, state steps of j-1, inverse of j) with inputs
loaded two steps ahead, so the in-order engines overlap independent work.
Right padding inside the launch (S not a multiple of C) loads zeros: g = 0, beta = 0, k = 0
leave the state untouched, as the twin's pads do. Matmul operands are fp32 (`gdn_prefill`,
exact) or bf16 (`gdn_prefill_bf16`, 4x TensorE rate); state, gates and PSUM stay fp32.
"""

import nki
import nki.isa as nisa
import nki.language as nl

from . import gdn_prefill_chunk as chunk
from .kernel_utils import constant_identity

MAX_CHUNK = 128
ITEMS_TOGETHER = 2  # (row, key head) items per step group (SBUF ~ 25 KiB per item)
LOAD_AHEAD = 2  # steps whose inputs are loaded before their stage A
A_LEAD = 1  # steps between a step's stage A (operators) and its stage B (inverse)


def chunk_size(seq):
    """C: 128, or the next power of two >= seq (at least 8) for short prompts."""
    size = 8
    while size < seq and size < MAX_CHUNK:
        size *= 2
    return size


def plan_packs(heads, kheads, size):
    """(key head, first value head, heads in pack): value heads of one key head, at most as
    many as keep the doubling's [P | Q] PSUM tile within one bank (2 * pack * C <= 512)."""
    rep = heads // kheads
    pack = max(1, min(rep, 512 // (2 * size)))
    while rep % pack:
        pack -= 1
    return [(kh, kh * rep + p0, pack) for kh in range(kheads) for p0 in range(0, rep, pack)]


def _my_share(items):
    n_prog = nl.num_programs(0) if nl.program_ndim() > 0 else 1
    pid = nl.program_id(0) if nl.program_ndim() > 0 else 0
    per = (len(items) + n_prog - 1) // n_prog
    return items[pid * per:(pid + 1) * per]


def _constants(size):
    """fp32 identity and U[j, i] = 1 for j <= i (the cumsum operator)."""
    eye = constant_identity(MAX_CHUNK, nl.float32)
    ones = nl.ndarray((size, size), dtype=nl.float32, buffer=nl.sbuf)
    nisa.memset(ones, 1.0)
    upper = nl.ndarray((size, size), dtype=nl.float32, buffer=nl.sbuf)
    nisa.affine_select(upper, pattern=[[1, size]], channel_multiplier=-1, on_true_tile=ones,
                       on_false_value=0.0, cmp_op=nl.greater_equal)
    return eye, upper


def _rows_view(src, b, t0, n_valid, h0, width):
    """HBM rows src[b, t0:t0+n_valid, h0:...] (width elements per token)."""
    seq, heads = src.shape[1], src.shape[2]
    per_head = src.shape[3] if len(src.shape) == 4 else 1
    return src.ap(pattern=[[heads * per_head, n_valid], [1, width]],
                  offset=(b * seq + t0) * heads * per_head + h0 * per_head)


def _load(dst, src, b, t0, n_valid, h0, width):
    """dst[0:n_valid] = rows; zero rows after n_valid (right padding)."""
    if n_valid < dst.shape[0]:
        nisa.memset(dst, 0.0)
    nisa.dma_copy(dst=dst[0:n_valid, :], src=_rows_view(src, b, t0, n_valid, h0, width))


def _state_view(state, b, h0, pk):
    """HBM view [K, (head, V)] of heads h0 .. h0+pk-1 of row b."""
    heads, dk, dv = state.shape[1], state.shape[2], state.shape[3]
    return state.ap(pattern=[[dv, dk], [dk * dv, pk], [1, dv]], offset=(b * heads + h0) * dk * dv)


def _jobs(group):
    """(item index, row, pack) of every pack of a step group."""
    return [(i, b, pack) for i, (b, kh, packs) in enumerate(group) for pack in packs]


def _load_step(tensors, group, t0, dims):
    """Raw inputs of one step: per item [k | q] rows, per pack (g, beta, v)."""
    q, k, v, g, beta = tensors[0:5]
    size, dk, dv, mm_dt, seq = dims
    n_valid = min(size, seq - t0)
    qk_raw, pack_raw = [], []
    for b, kh, packs in group:
        raw = nl.ndarray((size, 2, dk), dtype=nl.float32, buffer=nl.sbuf)
        _load(raw[:, 0, :], k, b, t0, n_valid, kh, dk)
        _load(raw[:, 1, :], q, b, t0, n_valid, kh, dk)
        qk_raw.append(raw)
    for i, b, (kh, h0, pk) in _jobs(group):
        g_cols = nl.ndarray((size, pk), dtype=nl.float32, buffer=nl.sbuf)
        _load(g_cols, g, b, t0, n_valid, h0, pk)
        beta_cols = nl.ndarray((size, pk), dtype=nl.float32, buffer=nl.sbuf)
        _load(beta_cols, beta, b, t0, n_valid, h0, pk)
        v_raw = nl.ndarray((size, pk, dv), dtype=nl.float32, buffer=nl.sbuf)
        _load(v_raw.reshape((size, pk * dv)), v, b, t0, n_valid, h0, pk * dv)
        pack_raw.append((g_cols, beta_cols, v_raw))
    return qk_raw, pack_raw


def _stage_a(raws, group, consts, dims):
    """Key work, gates, operators and state-step operands of one step (no state, no
    inverse)."""
    size, dk, dv, mm_dt, seq = dims
    qk_raw, pack_raw = raws
    kwork = chunk.key_work(qk_raw, size, dk, mm_dt)
    jobs = _jobs(group)
    gts = chunk.gates([(pack_raw[j][0], pack_raw[j][1]) for j in range(len(jobs))], consts[1],
                      size, dk)
    ops = chunk.operators([kwork[jobs[j][0]][2] for j in range(len(jobs))], gts, size, mm_dt)
    operands = chunk.step_operands([(pack_raw[j][2], kwork[jobs[j][0]], gts[j])
                                    for j in range(len(jobs))], size, dk, dv, mm_dt)
    return ops, operands


def _stage_b(a_out, consts, dims):
    """W^T of every pack of a step (round-major doubling)."""
    size, dk, dv, mm_dt, seq = dims
    ops, operands = a_out
    w_ts = chunk.inverse_t(ops, consts[0], size, mm_dt)
    return [(w_ts[j], operands[j], ops[j][2]) for j in range(len(ops))]


def _stage_c(tensors, states, sols, group, t0, last, dims):
    """State steps of one step; outputs stored; final states stored after the last chunk."""
    out, state_out = tensors[6], tensors[7]
    size, dk, dv, mm_dt, seq = dims
    n_valid = min(size, seq - t0)
    outs, new_states = chunk.state_step(states, sols, (size, dk, dv, mm_dt))
    jobs = _jobs(group)
    for j in range(len(jobs)):
        b, (_, h0, pk) = jobs[j][1], jobs[j][2]
        nisa.dma_copy(dst=_rows_view(out, b, t0, n_valid, h0, pk * dv),
                      src=outs[j].reshape((size, pk * dv))[0:n_valid, :])
        if last:
            nisa.dma_copy(dst=_state_view(state_out, b, h0, pk), src=new_states[j])
    return new_states


def _run(tensors, groups, consts, dims):
    """Three-stage software pipeline over (group, chunk) steps, emitted per iteration as
    loads(j+2), A(j+1), C(j-1), B(j): A (operators) and C (state steps) of neighbouring steps
    do not wait for B(j)'s long doubling chain, so the in-order engines find them queued
    ahead of it. It runs across group boundaries (no DMA waits behind a store that waits for
    compute). All states are loaded first (512 B per head and partition)."""
    state = tensors[5]
    size, dk, dv, mm_dt, seq = dims
    states = []
    for group in groups:
        tiles = []
        for i, b, (kh, h0, pk) in _jobs(group):
            s = nl.ndarray((dk, pk, dv), dtype=nl.float32, buffer=nl.sbuf)
            nisa.dma_copy(dst=s, src=_state_view(state, b, h0, pk))
            tiles.append(s)
        states.append(tiles)
    starts = list(range(0, seq, size))
    steps = [(gi, c) for gi in range(len(groups)) for c in range(len(starts))]
    n = len(steps)
    raws, a_out, b_out = [None] * n, [None] * n, [None] * n
    for j in range(-LOAD_AHEAD - A_LEAD, n + 2):
        jl = j + LOAD_AHEAD + A_LEAD
        if 0 <= jl < n:
            raws[jl] = _load_step(tensors, groups[steps[jl][0]], starts[steps[jl][1]], dims)
        ja = j + A_LEAD
        if 0 <= ja < n:
            a_out[ja] = _stage_a(raws[ja], groups[steps[ja][0]], consts, dims)
            raws[ja] = None
        if 0 <= j - 1 < n:
            gi, c = steps[j - 1]
            states[gi] = _stage_c(tensors, states[gi], b_out[j - 1], groups[gi], starts[c],
                                  c == len(starts) - 1, dims)
            b_out[j - 1] = None
        if 0 <= j < n:
            b_out[j] = _stage_b(a_out[j], consts, dims)
            a_out[j] = None


def _prefill(q, k, v, g, beta, state, mm_dt):
    batch, seq, kheads, dk = q.shape
    heads, dv = v.shape[2], v.shape[3]
    assert dk <= 128 and dv <= 128, "gdn_prefill: head dims must be <= 128"
    assert heads % kheads == 0, "gdn_prefill: value heads must be a multiple of key heads"
    out = nl.ndarray((batch, seq, heads, dv), dtype=nl.float32, buffer=nl.shared_hbm)
    state_out = nl.ndarray(state.shape, dtype=nl.float32, buffer=nl.shared_hbm)
    size = chunk_size(seq)
    packs = plan_packs(heads, kheads, size)
    items = [(b, kh, [p for p in packs if p[0] == kh]) for b in range(batch) for kh in range(kheads)]
    mine = _my_share(items)
    groups = [mine[i0:i0 + ITEMS_TOGETHER] for i0 in range(0, len(mine), ITEMS_TOGETHER)]
    _run((q, k, v, g, beta, state, out, state_out), groups, _constants(size),
         (size, dk, dv, mm_dt, seq))
    return out, state_out


@nki.jit
def gdn_prefill(q, k, v, g, beta, state):
    """q, k [B, S, Hk, Dk]; v [B, S, Hv, Dv]; g, beta [B, S, Hv]; state [B, Hv, Dk, Dv] fp32.

    Returns (out [B, S, Hv, Dv] fp32, final state fp32) = chunked_gated_delta_rule, with fp32
    matmul operands (exact)."""
    return _prefill(q, k, v, g, beta, state, nl.float32)


@nki.jit
def gdn_prefill_bf16(q, k, v, g, beta, state):
    """gdn_prefill with bf16 matmul operands (4x TensorE rate; fp32 state, gates and PSUM)."""
    return _prefill(q, k, v, g, beta, state, nl.bfloat16)
