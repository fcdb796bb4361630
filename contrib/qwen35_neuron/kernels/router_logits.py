"""MoE router logits in fp32 from the weights as stored (NKI).

Twin: `qwen35_neuron.model.router_logits.fp32_router_logits` (x [N, H], weight [E, H] ->
x @ weight^T [N, E] in fp32). TensorE multiplies bf16 operands into fp32 PSUM, so the weights are
read once, as stored, and never cast into an fp32 copy (the twin's ``weight.float()``).

Dimensions: N tokens, H hidden (a multiple of 128, or <= 128), E experts.

Args:
    x [N, H] @ HBM; weight [E, H] @ HBM, same dtype (bf16 or fp32).
Returns:
    logits [N, E] fp32 @ HBM.

Layout: weight^T is loaded once per program by transposing DMAs ([128 h, H/128, E] in SBUF, the
moving operand); per tile of up to 128 tokens x^T comes from TensorE transposes (the stationary)
and the H tiles accumulate in one PSUM bank per block of up to 512 experts. LNC: the token tiles
are split over the programs, each loading the weights once (a decode step has one tile: one
program works).

Pseudocode:
    for each token tile n0 and expert block e0 of this program:
        out[n0:, e0:] = sum over h tiles of x[n0:, h]^T-stationary @ weight[e0:, h]^T
"""

import nki
import nki.isa as nisa
import nki.language as nl

from .kernel_utils import PMAX, PSUM_FMAX


@nki.jit
def router_logits(x, weight):
    """x [N, H]; weight [E, H] -> logits [N, E] fp32."""
    n_tok, hidden = x.shape
    experts = weight.shape[0]
    th = min(PMAX, hidden)
    assert weight.shape[1] == hidden and hidden % th == 0, f"router_logits: weight {weight.shape}, H {hidden}"
    assert x.dtype == weight.dtype, "router_logits: x and weight must share a dtype"
    out = nl.ndarray((n_tok, experts), dtype=nl.float32, buffer=nl.shared_hbm)
    tiles = list(range(0, n_tok, PMAX))
    n_prog = nl.num_programs(0) if nl.program_ndim() > 0 else 1
    pid = nl.program_id(0) if nl.program_ndim() > 0 else 0
    per = (len(tiles) + n_prog - 1) // n_prog
    mine = tiles[pid * per:(pid + 1) * per]
    if not mine:
        return out

    # ===== weight^T once per program: [128 h, H/128, E] =====
    w_t = nl.ndarray((th, hidden // th, experts), dtype=weight.dtype, buffer=nl.sbuf)
    for e0 in range(0, experts, PSUM_FMAX):
        eb = min(PSUM_FMAX, experts - e0)
        for t in range(hidden // th):
            nisa.dma_transpose(dst=w_t[:, t, e0:e0 + eb], src=weight.ap(pattern=[[hidden, eb], [1, th]],
                                                                        offset=e0 * hidden + t * th))

    # ===== per token tile: x^T (TensorE transposes), one PSUM bank per expert block =====
    for n0 in mine:
        nt = min(PMAX, n_tok - n0)
        rows = nl.ndarray((nt, hidden), dtype=x.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=rows, src=x.ap(pattern=[[hidden, nt], [1, hidden]], offset=n0 * hidden))
        x_t = nl.ndarray((th, hidden // th, nt), dtype=x.dtype, buffer=nl.sbuf)
        for t in range(hidden // th):
            ps = nl.ndarray((th, nt), dtype=x.dtype, buffer=nl.psum)
            nisa.nc_transpose(ps, rows[:, t * th:(t + 1) * th])
            nisa.tensor_copy(dst=x_t[:, t, :], src=ps)
        for e0 in range(0, experts, PSUM_FMAX):
            eb = min(PSUM_FMAX, experts - e0)
            acc = nl.ndarray((nt, eb), dtype=nl.float32, buffer=nl.psum)
            for t in range(hidden // th):
                nisa.nc_matmul(acc, x_t[:, t, :], w_t[:, t, e0:e0 + eb], accumulate=t > 0)
            res = nl.ndarray((nt, eb), dtype=nl.float32, buffer=nl.sbuf)
            nisa.tensor_copy(dst=res, src=acc)
            nisa.dma_copy(dst=out.ap(pattern=[[experts, nt], [1, eb]], offset=n0 * experts + e0), src=res)
    return out
