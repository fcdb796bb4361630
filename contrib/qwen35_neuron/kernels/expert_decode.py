"""Routed experts of a decode step, reading only the chosen experts' weights in place (NKI).

Twin: `qwen35_neuron.model.selected_experts.selected_experts`. For each (token n, slot j) pair the
expert e = ids[n, j] contributes w[n, j] * down_e(silu(gate_e x_n) * up_e x_n), with the experts'
weights in HF's fused layout: gate_up [E, 2I, H] (gate rows, then up rows), down [E, H, I].

Selective loading: a pair's expert blocks come straight from HBM by DMAs whose offset is the expert
id (``ap(..., scalar_offset=id, indirect_dim=0)``), so HBM sees each pair's 3 I H weights once and
nothing is gathered into a copy (the torch form, ``weight[ids]``, writes and re-reads them). The
DMAs transpose on the way (``dma_transpose``): both products contract over the weights' columns,
and TensorE contracts over partitions.

Dimensions: N tokens, k slots (N k < E: decode), H hidden and I intermediate, each a multiple of
128 or at most 128.

Args:
    x [N, H] @ HBM (bf16 or fp32); weights [N, k] fp32 @ HBM; ids [N, k] int32 @ HBM;
    gate_up [E, 2I, H] @ HBM and down [E, H, I] @ HBM, in x's dtype.
Returns:
    out [P, N, H] fp32 @ HBM: program p's partial sum. LNC: the pairs are split over the P
    programs (contiguous shares); the caller adds the P partials (P = 1 without a grid).

Per pair, on chip: gate_up^T blocks [128 h, up to 512 rows] -> TensorE accumulates gate and up
columns [I, 1] over the H tiles (x as a [128, H/128] column tile, the moving operand, N = 1);
ScalarE silu reads PSUM; VectorE forms h = silu(g) w u in the weights' dtype; down^T blocks
[I, up to 512 h] -> TensorE accumulates every pair's down_e h into one PSUM tile [128 h, H/128]
per token, stored once (transposed on chip to rows).

Pseudocode:
    for each pair (n, j) of this program:
        e = ids[n, j]
        g = gate_up[e, :I] @ x[n];  u = gate_up[e, I:] @ x[n]
        acc[n] += down[e] @ (silu(g) * weights[n, j] * u)
    out[program] = acc
"""

import nki
import nki.isa as nisa
import nki.language as nl

from .kernel_utils import PMAX, PSUM_FMAX

BLOCK = 512  # columns of one transposed weight block (1 KiB rows in bf16: full DMA descriptors)


def _my_pairs(n_pairs):
    """(program id, programs, this program's pairs): contiguous shares."""
    n_prog = nl.num_programs(0) if nl.program_ndim() > 0 else 1
    pid = nl.program_id(0) if nl.program_ndim() > 0 else 0
    per = (n_pairs + n_prog - 1) // n_prog
    return pid, n_prog, list(range(pid * per, min(n_pairs, (pid + 1) * per)))


def _ones(shape, dtype):
    tile = nl.ndarray(shape, dtype=dtype, buffer=nl.sbuf)
    nisa.memset(tile, 1.0)
    return tile


def _routing_weights(weights, n_pairs):
    """[128, N k] fp32: every pair's routing weight on every partition (K = 1 matmul with a ones row)."""
    row = nl.ndarray((1, n_pairs), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=row, src=weights.ap(pattern=[[n_pairs, 1], [1, n_pairs]], offset=0))
    ones = _ones((1, PMAX), nl.float32)
    out = nl.ndarray((PMAX, n_pairs), dtype=nl.float32, buffer=nl.sbuf)
    for c0 in range(0, n_pairs, PSUM_FMAX):
        cw = min(PSUM_FMAX, n_pairs - c0)
        ps = nl.ndarray((PMAX, cw), dtype=nl.float32, buffer=nl.psum)
        nisa.nc_matmul(ps, ones, row[:, c0:c0 + cw], is_stationary_onezero=True)
        nisa.tensor_copy(dst=out[:, c0:c0 + cw], src=ps)
    return out


def _x_columns(x, n, hidden, th):
    """[th, H/th] tile in x's dtype: x[n, t*th + p] at partition p, column t (K = 1 matmuls)."""
    row = nl.ndarray((1, hidden), dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=row, src=x.ap(pattern=[[hidden, 1], [1, hidden]], offset=n * hidden))
    one = _ones((1, 1), x.dtype)
    ps = nl.ndarray((th, hidden // th), dtype=nl.float32, buffer=nl.psum)
    for t in range(hidden // th):
        nisa.nc_matmul(ps[:, t:t + 1], row[:, t * th:(t + 1) * th], one)
    cols = nl.ndarray((th, hidden // th), dtype=x.dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=cols, src=ps)
    return cols


def _gate_up(gate_up, expert, xc, inter, hidden, th, ic):
    """PSUM [ic, 2 C]: column c = gate rows of I-chunk c dotted with x, column C + c = up rows."""
    chunks = inter // ic
    rows = 2 * inter
    rb = min(rows, BLOCK)
    gu = nl.ndarray((ic, 2 * chunks), dtype=nl.float32, buffer=nl.psum)
    for t in range(hidden // th):
        for r0 in range(0, rows, rb):
            block = nl.ndarray((th, rb), dtype=gate_up.dtype, buffer=nl.sbuf)
            nisa.dma_transpose(dst=block, src=gate_up.ap(pattern=[[hidden, rb], [1, th]], offset=r0 * hidden + t * th,
                                                        scalar_offset=expert, indirect_dim=0))
            for col in range(2 * chunks):
                start = (col % chunks) * ic + (col // chunks) * inter  # gate chunk, then up chunk
                if r0 <= start < r0 + rb:
                    nisa.nc_matmul(gu[:, col:col + 1], block[:, start - r0:start - r0 + ic], xc[:, t:t + 1],
                                   accumulate=t > 0)
    return gu


def _hidden(gu, w_col, chunks, ic, dtype):
    """[ic, C] in the weights' dtype: h = silu(gate) * w * up, one column per I-chunk."""
    h = nl.ndarray((ic, chunks), dtype=dtype, buffer=nl.sbuf)
    for c in range(chunks):
        act = nl.ndarray((ic, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=act, op=nl.silu, data=gu[:, c:c + 1])
        nisa.scalar_tensor_tensor(dst=h[:, c:c + 1], data=act, op0=nl.multiply, operand0=w_col[0:ic, :],
                                  op1=nl.multiply, operand1=gu[:, chunks + c:chunks + c + 1])
    return h


def _down(down, expert, h, acc, first, inter, hidden, th, ic):
    """acc[:, t] (+)= rows t*th .. of down[expert] @ h, for every H tile t."""
    hb = min(hidden, BLOCK)
    for c in range(inter // ic):
        for h0 in range(0, hidden, hb):
            block = nl.ndarray((ic, hb), dtype=down.dtype, buffer=nl.sbuf)
            nisa.dma_transpose(dst=block, src=down.ap(pattern=[[inter, hb], [1, ic]], offset=h0 * inter + c * ic,
                                                      scalar_offset=expert, indirect_dim=0))
            for s in range(hb // th):
                t = h0 // th + s
                nisa.nc_matmul(acc[:, t:t + 1], block[:, s * th:(s + 1) * th], h[:, c:c + 1],
                               accumulate=not (first and c == 0))


def _store(out, pid, n, n_tok, acc, hidden, th):
    """out[pid, n, :] = acc (PSUM [th, H/th] fp32, or None: zeros), written as H/th rows of th."""
    tiles = hidden // th
    rows = nl.ndarray((tiles, th), dtype=nl.float32, buffer=nl.sbuf)
    if acc is None:
        nisa.memset(rows, 0.0)
    else:
        cols = nl.ndarray((th, tiles), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=cols, src=acc)
        ps = nl.ndarray((tiles, th), dtype=nl.float32, buffer=nl.psum)
        nisa.nc_transpose(ps, cols)
        nisa.tensor_copy(dst=rows, src=ps)
    nisa.dma_copy(dst=out.ap(pattern=[[th, tiles], [1, th]], offset=(pid * n_tok + n) * hidden), src=rows)


@nki.jit
def expert_decode(x, weights, ids, gate_up, down):
    """x [N, H]; weights [N, k] fp32; ids [N, k] int32; gate_up [E, 2I, H]; down [E, H, I] ->
    out [P, N, H] fp32, the programs' partial sums (their sum equals selected_experts)."""
    n_tok, hidden = x.shape
    top_k = ids.shape[1]
    inter = gate_up.shape[1] // 2
    th, ic = min(PMAX, hidden), min(PMAX, inter)
    assert down.shape == (gate_up.shape[0], hidden, inter), f"expert_decode: down {down.shape} must be [E, H, I]"
    assert hidden % th == 0 and inter % ic == 0, f"expert_decode: H {hidden} and I {inter} must be multiples of 128 or <= 128"
    assert gate_up.dtype == down.dtype == x.dtype, "expert_decode: x and the expert weights must share a dtype"
    n_pairs = n_tok * top_k
    pid, n_prog, mine = _my_pairs(n_pairs)
    out = nl.ndarray((n_prog, n_tok, hidden), dtype=nl.float32, buffer=nl.shared_hbm)

    # ===== per launch: expert ids and routing weights =====
    ids_sb = nl.ndarray((1, n_pairs), dtype=nl.int32, buffer=nl.sbuf)
    nisa.dma_copy(dst=ids_sb, src=ids.ap(pattern=[[n_pairs, 1], [1, n_pairs]], offset=0))
    wb = _routing_weights(weights, n_pairs)

    # ===== per token: this program's pairs accumulate in one PSUM tile, stored once =====
    for n in range(n_tok):
        pairs = [p for p in mine if p // top_k == n]
        acc = None
        if pairs:
            xc = _x_columns(x, n, hidden, th)
            acc = nl.ndarray((th, hidden // th), dtype=nl.float32, buffer=nl.psum)
            for i, p in enumerate(pairs):
                expert = ids_sb[0:1, p:p + 1]
                gu = _gate_up(gate_up, expert, xc, inter, hidden, th, ic)
                h = _hidden(gu, wb[:, p:p + 1], inter // ic, ic, down.dtype)
                _down(down, expert, h, acc, i == 0, inter, hidden, th, ic)
        _store(out, pid, n, n_tok, acc, hidden, th)
    return out
