"""A *modelled* (not measured) trn2 latency for the instructions one kernel run recorded.

Assumptions (nki-facts.md section 6; aws-neuron-sdk trainium2_arch.rst, nki_perf_guide.rst,
nki-dma-bandwidth-guide.rst), all per NeuronCore-v3:
- TensorE 128x128 at 2.4 GHz: a matmul takes max(N_moving, 64) cycles for bf16/fp16/fp8,
  4x that for fp32/tf32 operands (2x with an is_*_onezero hint). LoadStationary is assumed
  hidden behind the previous matmul. Transpose = matmul with N = input partitions.
- VectorE 0.96 GHz: fixed 100 cycles + max(64, N * inputs / perf) cycles, N = elements per
  partition; perf = 4 for bf16/fp16 SBUF->SBUF tensor_copy/tensor_scalar, 2 for all-bf16
  SBUF tensor_tensor.
- ScalarE 1.2 GHz: fixed 224 cycles (a tiny dependent ACT instruction measured ~189 ns) +
  max(64, N) cycles, + 64 cycles when the accumulator is read out.
- GpSimd 1.2 GHz: fixed 100 cycles + max(64, N) cycles (iota/affine_select stream).
- DMA: 16 queues; each DMA pays a fixed 1.3 us latency (overlaps across queues), then moves
  its bytes over a shared 368 B/ns (16 x 23 B/ns) link; every descriptor (contiguous run)
  is charged at least 512 B, because small descriptors run far below peak. DMA busy time
  (for the busiest-engine bound) = max(transfer time, (transfer time + 1.3 us per DMA) / 16).
- Engines run in parallel, each in program order; an instruction starts when its engine is
  free and the storage ranges it reads/writes are no longer being written/read (RAW, WAR,
  WAW on byte ranges). The makespan of that schedule is the modelled time; the busiest
  engine's total busy time is a lower bound. Not modelled: semaphore latency between
  engines, the SBUF port VectorE and GpSimd share, PSUM bank conflicts, DMA queue
  assignment by the compiler, instruction fetch.
- Programs of an LNC=2 launch run on two cores in parallel: time = max over programs.
- Roofline per core: HBM 2.9 TB/s per chip / 8 cores = 362.5 B/ns; 79 TFLOPS bf16 and
  20 TFLOPS fp32 dense.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

from .counters import ENGINES, InstructionRecord, Recorder

TENSOR_GHZ = 2.4
VECTOR_GHZ = 0.96
SCALAR_GHZ = 1.2
GPSIMD_GHZ = 1.2
MIN_INITIATION_CYCLES = 64
VECTOR_FIXED_CYCLES = 100
SCALAR_FIXED_CYCLES = 224
GPSIMD_FIXED_CYCLES = 100
FP32_MATMUL_FACTOR = 4
DMA_QUEUES = 16
DMA_BYTES_PER_NS = 16 * 23.0
DMA_FIXED_NS = 1300.0
DMA_MIN_DESCRIPTOR_BYTES = 512
HBM_BYTES_PER_NS = 2900.0 / 8
PEAK_FLOPS_PER_NS_BF16 = 79_000.0
PEAK_FLOPS_PER_NS_FP32 = 20_000.0
_MAX_INTERVALS = 32


def instruction_ns(r: InstructionRecord) -> float:
    """Modelled duration of one instruction on its engine (DMA: transfer part only)."""
    if r.engine == "Tensor":
        cycles = max(r.free_elems, MIN_INITIATION_CYCLES)
        if r.fp32_matmul:
            cycles *= FP32_MATMUL_FACTOR // (2 if r.onezero else 1)
        return cycles / TENSOR_GHZ
    if r.engine == "Vector":
        work = r.free_elems * max(r.n_inputs, 1) / max(r.perf_factor, 1)
        return (VECTOR_FIXED_CYCLES + max(work, MIN_INITIATION_CYCLES) + r.extra_cycles) / VECTOR_GHZ
    if r.engine == "Scalar":
        work = max(r.free_elems, MIN_INITIATION_CYCLES)
        return (SCALAR_FIXED_CYCLES + work + r.extra_cycles) / SCALAR_GHZ
    if r.engine == "GpSimd":
        return (GPSIMD_FIXED_CYCLES + max(r.free_elems, MIN_INITIATION_CYCLES)) / GPSIMD_GHZ
    charged = max(r.bytes, r.descriptors * DMA_MIN_DESCRIPTOR_BYTES)
    return charged / DMA_BYTES_PER_NS / max(r.dma_efficiency, 1e-6)


class _Hazards:
    """Last write/read end times per byte range of each allocation."""

    def __init__(self) -> None:
        self.writes: Dict[int, List[Tuple[int, int, float]]] = {}
        self.reads: Dict[int, List[Tuple[int, int, float]]] = {}

    @staticmethod
    def _latest(table: Dict[int, List[Tuple[int, int, float]]], span: Tuple[int, int, int]) -> float:
        alloc, lo, hi = span
        return max((t for a, b, t in table.get(alloc, ()) if a < hi and lo < b), default=0.0)

    @staticmethod
    def _add(table: Dict[int, List[Tuple[int, int, float]]], span: Tuple[int, int, int], t: float) -> None:
        alloc, lo, hi = span
        entries = table.setdefault(alloc, [])
        entries.append((lo, hi, t))
        if len(entries) > _MAX_INTERVALS:  # merge the two oldest (conservative)
            (a1, b1, t1), (a2, b2, t2) = entries[0], entries[1]
            entries[:2] = [(min(a1, a2), max(b1, b2), max(t1, t2))]

    def ready(self, r: InstructionRecord) -> float:
        t = max((self._latest(self.writes, s) for s in r.reads), default=0.0)
        for s in r.writes:
            t = max(t, self._latest(self.writes, s), self._latest(self.reads, s))
        return t

    def done(self, r: InstructionRecord, end: float) -> None:
        for s in r.reads:
            self._add(self.reads, s, end)
        for s in r.writes:
            self._add(self.writes, s, end)


def schedule_ns(records: Sequence[InstructionRecord]) -> float:
    """Makespan of the in-order-per-engine, dependency-respecting schedule of one program."""
    free = {e: 0.0 for e in ENGINES if e != "DMA"}
    queues = [0.0] * DMA_QUEUES
    link_free = 0.0
    hazards = _Hazards()
    makespan = 0.0
    for r in records:
        ready = hazards.ready(r)
        if r.engine == "DMA":
            q = min(range(DMA_QUEUES), key=queues.__getitem__)
            start = max(ready, queues[q])
            xfer = max(start + DMA_FIXED_NS, link_free)
            end = xfer + instruction_ns(r)
            link_free = queues[q] = end
        else:
            start = max(ready, free[r.engine])
            end = start + instruction_ns(r)
            free[r.engine] = end
        hazards.done(r, end)
        makespan = max(makespan, end)
    return makespan


def dma_busy_ns(transfer_ns: float, dmas: int) -> float:
    """A lower bound on the DMA side of any schedule of `dmas` transfers taking `transfer_ns` on
    the shared link in all: the link moves them one at a time, and each occupies one of the 16
    queues for its fixed latency plus its transfer. (Adding latency / 16 per DMA to the transfer
    time, as before, is no bound: the schedule hides the latency behind other queues' transfers,
    so expert_decode's "busiest engine" came out above its makespan.)"""
    return max(transfer_ns, (transfer_ns + dmas * DMA_FIXED_NS) / DMA_QUEUES)


def roofline_ns(hbm_bytes: float, flops_bf16: float = 0.0, flops_fp32: float = 0.0) -> float:
    """Lower bound from HBM bandwidth and TensorE peak for one NeuronCore."""
    return max(hbm_bytes / HBM_BYTES_PER_NS,
               flops_bf16 / PEAK_FLOPS_PER_NS_BF16 + flops_fp32 / PEAK_FLOPS_PER_NS_FP32)


@dataclass
class KernelCost:
    """Modelled cost of one launch (all times in ns, modelled for trn2, not measured)."""

    programs: int
    instructions: Dict[str, int]
    busy_ns: Dict[str, float]
    dma_bytes: int
    hbm_bytes: int
    flops: int
    modelled_ns: float
    busy_bound_ns: float
    roofline_ns: float
    notes: List[str] = field(default_factory=list)

    @property
    def bottleneck(self) -> str:
        return max(self.busy_ns, key=self.busy_ns.__getitem__)

    def format(self) -> str:
        lines = [f"modelled trn2 cost ({self.programs} program(s); model, not a measurement)",
                 f"{'engine':<8} {'instr':>8} {'busy us':>10}"]
        for e in ENGINES:
            lines.append(f"{e:<8} {self.instructions[e]:>8d} {self.busy_ns[e] / 1e3:>10.3f}")
        lines += [f"DMA bytes            {self.dma_bytes:>12d}",
                  f"HBM bytes            {self.hbm_bytes:>12d}",
                  f"matmul FLOPs         {self.flops:>12d}",
                  f"modelled time (us)   {self.modelled_ns / 1e3:>12.3f}",
                  f"busiest engine (us)  {self.busy_bound_ns / 1e3:>12.3f}  ({self.bottleneck})",
                  f"roofline (us)        {self.roofline_ns / 1e3:>12.3f}"]
        return "\n".join(lines + self.notes)


def estimate(recorders: Sequence[Recorder]) -> KernelCost:
    """Price the recorded instructions of every program of a launch."""
    counts = {e: 0 for e in ENGINES}
    busy_max = {e: 0.0 for e in ENGINES}
    makespan = 0.0
    dma_bytes = hbm_bytes = flops = 0
    roof = 0.0
    for rec in recorders:
        busy = {e: 0.0 for e in ENGINES}
        prog_hbm = 0
        f16 = f32 = 0
        dmas = 0
        for r in rec.records:
            counts[r.engine] += 1
            busy[r.engine] += instruction_ns(r)
            dmas += r.engine == "DMA"
            if r.engine == "DMA":
                dma_bytes += r.bytes
                prog_hbm += r.hbm_bytes
            flops += r.flops
            f32 += r.flops if r.fp32_matmul else 0
            f16 += 0 if r.fp32_matmul else r.flops
        busy["DMA"] = dma_busy_ns(busy["DMA"], dmas)
        for e in ENGINES:
            busy_max[e] = max(busy_max[e], busy[e])
        hbm_bytes += prog_hbm
        makespan = max(makespan, schedule_ns(rec.records))
        roof = max(roof, roofline_ns(prog_hbm, f16, f32))
    return KernelCost(programs=len(recorders), instructions=counts, busy_ns=busy_max,
                      dma_bytes=dma_bytes, hbm_bytes=hbm_bytes, flops=flops,
                      modelled_ns=makespan, busy_bound_ns=max(busy_max.values()),
                      roofline_ns=roof)
