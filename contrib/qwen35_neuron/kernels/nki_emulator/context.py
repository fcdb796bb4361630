"""The state of the program being emulated: SPMD ids, memory, recorder, engine registers.

One `ProgramContext` per program of a launch (LNC=2 runs two, one after the other). They
share a `LaunchState` so that `shared_hbm` outputs made by both programs map to one
storage. Outside any kernel run a default context exists, so `nl.ndarray` and `nisa.*`
also work at top level (handy in tests).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from . import rules
from .counters import Recorder
from .memory import Allocation, MemoryTracker, SBUF_BYTES_PER_PARTITION


@dataclass
class LaunchState:
    """Shared by all programs of one launch."""

    num_programs: int = 1
    grid_ndim: int = 0
    shared: Dict[object, Allocation] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)


class ProgramContext:
    """Everything one running program (one NeuronCore) owns."""

    def __init__(self, program_id: int = 0, launch: Optional[LaunchState] = None,
                 sbuf_budget: int = SBUF_BYTES_PER_PARTITION) -> None:
        self.program_id = program_id
        self.launch = launch or LaunchState()
        self.recorder = Recorder(program_id)
        self.memory = MemoryTracker(sbuf_budget, clock=lambda: len(self.recorder.records),
                                    op_name=self._op_name)
        self.shared_counts: Dict[str, int] = {}
        # Per-lane accumulator registers of ScalarE (activation reduce) and VectorE.
        self.act_regs = np.zeros(rules.PMAX, dtype=np.float32)
        self.vec_regs = np.zeros(rules.PMAX, dtype=np.float32)
        self.identity_cache: Dict[str, object] = {}

    def _op_name(self, index: int) -> str:
        records = self.recorder.records
        if 0 <= index < len(records):
            return f"instruction {index} ({records[index].engine}.{records[index].op})"
        return f"instruction {index}"

    def shared_key(self, name: str) -> Tuple[str, int]:
        """Key of a shared_hbm allocation: (name, how many with that name came before).

        Unnamed allocations share the name '' and so are matched by allocation order.
        """
        n = self.shared_counts.get(name, 0)
        self.shared_counts[name] = n + 1
        return (name, n)

    def warn(self, message: str) -> None:
        self.launch.warnings.append(f"program {self.program_id}: {message}")


_stack: List[ProgramContext] = []
_default: Optional[ProgramContext] = None


def current() -> ProgramContext:
    """The running program, or the top-level default context."""
    global _default
    if _stack:
        return _stack[-1]
    if _default is None:
        _default = ProgramContext()
    return _default


@contextlib.contextmanager
def running(ctx: ProgramContext) -> Iterator[ProgramContext]:
    """Make `ctx` the current program for the duration of the block."""
    _stack.append(ctx)
    try:
        yield ctx
    finally:
        _stack.pop()
