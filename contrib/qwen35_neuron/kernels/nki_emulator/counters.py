"""Instruction records and per-engine counters for one program.

Every emulated ISA instruction appends one `InstructionRecord`: which engine ran it, how
big it was (partitions, free elements, bytes) and which storage ranges it read and wrote.
The counts answer "how many instructions per engine"; the sizes and ranges let
`cost_model` price and schedule them.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

ENGINES = ("Tensor", "Vector", "Scalar", "GpSimd", "DMA")

# (allocation id, first byte, one past last byte) of a storage range.
Span = Tuple[int, int, int]


@dataclass(frozen=True)
class InstructionRecord:
    """One instruction as the cost model needs it. Sizes are per instruction."""

    seq: int
    program: int
    engine: str
    op: str
    partitions: int
    free_elems: int            # elements per partition streamed through the engine
    bytes: int                 # DMA: bytes moved; compute: bytes written
    n_inputs: int = 1          # tensor inputs streamed (Vector: 2 inputs cost ~2N)
    fp32_matmul: bool = False  # TensorE with fp32/tf32 operands (~4x slower)
    onezero: bool = False      # fp32 matmul with a 0/1 operand (~2x faster than fp32)
    perf_factor: int = 1       # VectorE perf mode speed-up (1, 2 or 4)
    extra_cycles: int = 0      # e.g. ACT accumulator read-out
    flops: int = 0             # 2*K*M*N for matmuls
    descriptors: int = 0       # DMA contiguous runs (descriptors)
    hbm_bytes: int = 0         # DMA bytes read from or written to HBM
    dma_efficiency: float = 1.0  # fraction of copy throughput (dma_transpose is lower)
    reads: Tuple[Span, ...] = ()
    writes: Tuple[Span, ...] = ()


@dataclass
class Recorder:
    """Collects the records of one program, in program order."""

    program: int = 0
    records: List[InstructionRecord] = field(default_factory=list)

    def add(self, **fields: object) -> InstructionRecord:
        rec = InstructionRecord(seq=len(self.records), program=self.program, **fields)  # type: ignore[arg-type]
        self.records.append(rec)
        return rec

    @property
    def counts(self) -> Dict[str, int]:
        """Instructions per engine (every engine listed, zeros included)."""
        c = Counter(r.engine for r in self.records)
        return {e: c.get(e, 0) for e in ENGINES}

    @property
    def dma_bytes(self) -> int:
        return sum(r.bytes for r in self.records if r.engine == "DMA")

    def op_counts(self) -> Dict[str, int]:
        """Instructions per (engine, op) name, e.g. {'Vector.tensor_tensor': 3}."""
        return dict(Counter(f"{r.engine}.{r.op}" for r in self.records))


def merge_counts(recorders: List[Recorder]) -> Dict[str, int]:
    """Sum per-engine counts over the programs of one launch."""
    total = {e: 0 for e in ENGINES}
    for rec in recorders:
        for e, n in rec.counts.items():
            total[e] += n
    return total
