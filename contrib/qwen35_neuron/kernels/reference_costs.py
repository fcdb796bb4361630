"""Our *estimate* of nki-library's gdn_tkg / gdn_cte costs under the same cost model as ours.

Not a measurement and not their code: the instruction mix below was counted by reading their
kernels (aws-neuron/nki-library e9ef98fc, experimental/gdn/gdn_cte.py and gdn_tkg.py) and is
priced with the emulator's per-instruction model. Each instruction is (engine, free elements,
tensor inputs, fp32 matmul?, half-precision perf factor). The estimate is the busiest engine
(perfect overlap: a lower bound on their time), next to the per-unit dependency chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

from .nki_emulator.cost_model import DMA_FIXED_NS, DMA_QUEUES, instruction_ns
from .nki_emulator.counters import ENGINES, InstructionRecord

Op = Tuple[str, int, int, bool, int]  # engine, free elements, inputs, fp32 matmul, perf


def _rec(engine: str, free: int, n_inputs: int = 1, fp32: bool = False, perf: int = 1,
         nbytes: int = 0, descriptors: int = 0) -> InstructionRecord:
    return InstructionRecord(seq=0, program=0, engine=engine, op="estimate", partitions=128,
                             free_elems=free, bytes=nbytes, n_inputs=n_inputs, fp32_matmul=fp32,
                             perf_factor=perf, descriptors=descriptors)


def _price(ops: List[Op]) -> Tuple[Dict[str, float], Dict[str, int], float]:
    """(busy ns per engine, instructions per engine, serial chain ns) of one unit."""
    busy = {e: 0.0 for e in ENGINES}
    count = {e: 0 for e in ENGINES}
    chain = 0.0
    for engine, free, n_in, fp32, perf in ops:
        if engine == "DMA":
            ns = instruction_ns(_rec("DMA", free, nbytes=free, descriptors=max(1, free // 512)))
            busy["DMA"] += ns + DMA_FIXED_NS / DMA_QUEUES
            chain += ns + DMA_FIXED_NS
        else:
            ns = instruction_ns(_rec(engine, free, n_in, fp32, perf))
            busy[engine] += ns
            chain += ns
        count[engine] += 1
    return busy, count, chain


# gdn_tkg, per (row, value head): the per-head loop of the kernel (K = V = 128, fp32 state,
# bf16 state copies for the three matmuls, RMSNormGated folded in).
TKG_PER_HEAD: List[Op] = [
    ("Vector", 128, 1, False, 4),  # k_f *= k_scale (bf16 row)
    ("Vector", 128, 1, False, 1),  # S *= exp(g)            [K, V] fp32
    ("Scalar", 128, 1, False, 1),  # S -> bf16
    ("Tensor", 128, 1, False, 1),  # kv = k^T S_bf
    ("Vector", 128, 2, False, 1),  # diff = v - kv
    ("Vector", 128, 1, False, 1),  # delta = diff * beta
    ("Scalar", 128, 1, False, 1),  # delta -> bf16
    ("Tensor", 128, 1, False, 1),  # outer(k, delta), K = 1 contraction
    ("Vector", 128, 2, False, 1),  # S += outer (PSUM)
    ("Scalar", 128, 1, False, 1),  # S -> bf16 again
    ("Tensor", 128, 1, False, 1),  # out = q^T S_bf
    ("Scalar", 128, 1, False, 1),  # out PSUM -> SBUF
    ("Scalar", 192, 1, False, 1),  # square + sum (accumulator read-out ~64 cycles)
    ("Scalar", 64, 1, False, 1),  # rsqrt
    ("Vector", 128, 2, False, 1),  # (o * rstd) * w
    ("Scalar", 128, 1, False, 1),  # silu(z)
    ("Vector", 128, 2, False, 1),  # * silu(z) -> bf16
]
# per launch: 11 input DMAs + state in/out (one DMA each), beta/g/l2norm preamble with four
# stream-shuffle broadcasts (4 instructions each) and two ones-vector matmuls.
TKG_PER_LAUNCH: List[Op] = ([("DMA", 4096, 1, False, 1)] * 11 + [("Vector", 64, 1, False, 1)] * 16
                            + [("Scalar", 64, 1, False, 1)] * 9 + [("Tensor", 64, 1, False, 1)] * 2
                            + [("Vector", 64, 2, False, 1)] * 6)


# gdn_cte, per 64-token chunk and head (phases 1a and 2/3 of the kernel) and per group of 8
# chunks (phase 1b: 4 sub-blocks of 16 rows, doubling in 4 rounds, coupling, HBM staging).
CTE_PER_CHUNK: List[Op] = (
    [("DMA", 256, 1, False, 1)] * 2 + [("DMA", 8192, 1, False, 1)] * 7  # beta; dma_transposes
    + [("Scalar", 64, 1, False, 1)] * 3 + [("Vector", 64, 1, False, 1)] * 8
    + [("Vector", 64, 2, False, 1)] * 4 + [("GpSimd", 64, 1, False, 1)] * 2
    + [("Tensor", 64, 1, False, 1)] * 3  # k k^T, transpose of cg, q k^T
    + [("Scalar", 128, 1, False, 1)] * 6  # rhs scalings, o_cross, k_dec, state evictions
    + [("Vector", 128, 1, False, 1)] * 6 + [("Vector", 128, 2, False, 1)] * 5
    + [("Tensor", 128, 1, False, 1)] * 5  # q S, W S, qkt v_new, k^T v_new, state
    + [("DMA", 32768, 1, False, 1)])  # output rows
CTE_PER_GROUP: List[Op] = (
    [("DMA", 65536, 1, False, 1)] * 34  # A / rhs / W / U staging through HBM (writes + reads)
    + [("DMA", 32768, 1, False, 1)] * 10  # dma_transposes of the block operators
    + [("Vector", 512, 1, False, 1)] * 8 + [("Scalar", 128, 1, False, 1)] * 28
    + [("Vector", 128, 2, False, 1)] * 22 + [("Tensor", 128, 1, False, 1)] * 44)


@dataclass(frozen=True)
class Estimate:
    """An estimate of one launch: busy ns per engine, instructions, and the bounds."""

    busy: Dict[str, float]
    count: Dict[str, int]
    chain_ns: float

    @property
    def bound_ns(self) -> float:
        return max(self.busy.values())


def _scale(units: List[Tuple[List[Op], int]]) -> Estimate:
    busy = {e: 0.0 for e in ENGINES}
    count = {e: 0 for e in ENGINES}
    chain = 0.0
    for ops, n in units:
        b, c, ch = _price(ops)
        for e in ENGINES:
            busy[e] += b[e] * n
            count[e] += c[e] * n
        chain = max(chain, ch)
    return Estimate(busy, count, chain)


def nkilib_gdn_tkg(batch: int, heads: int) -> Estimate:
    """gdn_tkg for batch rows x heads value heads (one token)."""
    state_dma = [("DMA", 128 * 128 * 4, 1, False, 1)] * 2
    return _scale([(TKG_PER_HEAD, batch * heads), (TKG_PER_LAUNCH, 1), (state_dma, batch * heads)])


def nkilib_gdn_cte(batch: int, heads: int, seq: int) -> Estimate:
    """gdn_cte for batch rows x heads (GQA expanded) x seq tokens (chunks of 64)."""
    chunks = -(-seq // 64)
    groups = -(-chunks // 8)
    state_dma = [("DMA", 128 * 128 * 4, 1, False, 1)]
    return _scale([(CTE_PER_CHUNK, batch * heads * chunks), (CTE_PER_GROUP, batch * heads * groups),
                   (state_dma, batch * heads)])
