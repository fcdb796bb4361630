"""The state of the program being emulated: SPMD ids, memory, recorder, engine registers.

One `ProgramContext` per program of a launch. An LNC=2 launch runs its two programs
concurrently, one thread each (as the official simulator does), so that `nisa.sendrecv` and
`nisa.core_barrier` can rendezvous; the current program is therefore per thread. The programs
share a `LaunchState`: `shared_hbm` tensors made by both map to one storage, and the
cross-core exchange (`lnc.CrossCore`) lives there. Outside any kernel run a default context
exists, so `nl.ndarray` and `nisa.*` also work at top level (handy in tests).
"""
from __future__ import annotations

import contextlib
import threading
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
    rank: int = 0       # collective rank (logical NeuronCore) of a multi-rank launch
    num_ranks: int = 1
    shared: Dict[object, Allocation] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards `shared`
    cross: Optional[object] = None  # isa_lnc.CrossCore of a concurrent launch (set by jit.launch)


class ProgramContext:
    """Everything one running program (one NeuronCore) owns."""

    def __init__(self, program_id: int = 0, launch: Optional[LaunchState] = None,
                 sbuf_budget: int = SBUF_BYTES_PER_PARTITION) -> None:
        self.program_id = program_id
        self.launch = launch or LaunchState()
        # this program's index among all programs of all ranks (the cross-core meeting points)
        self.slot = self.launch.rank * self.launch.num_programs + program_id
        self.top_level = False  # fresh_program(): a context for top-level tests, not a launch
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


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.stack: List[ProgramContext] = []
        self.default: Optional[ProgramContext] = None


_thread = _ThreadState()


def current() -> ProgramContext:
    """This thread's running program, or its top-level default context."""
    stack = _thread.stack
    if stack:
        return stack[-1]
    if _thread.default is None:
        _thread.default = ProgramContext()
    return _thread.default


def in_program() -> bool:
    """True while a kernel launch's program runs in this thread."""
    return bool(_thread.stack) and not _thread.stack[-1].top_level


@contextlib.contextmanager
def running(ctx: ProgramContext) -> Iterator[ProgramContext]:
    """Make `ctx` this thread's current program for the duration of the block."""
    _thread.stack.append(ctx)
    try:
        yield ctx
    finally:
        _thread.stack.pop()
