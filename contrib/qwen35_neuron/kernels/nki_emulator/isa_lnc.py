"""Cross-core instructions of an LNC launch: `sendrecv` and `core_barrier`, and their rendezvous.

Under LNC=2 the two programs of a launch run at the same time on the two physical cores of a
logical core (here: one thread each, see `jit.launch`). `nisa.sendrecv` sends this core's SBUF
`src` tile into the `dst` tile of core `send_to_rank` while receiving core `recv_from_rank`'s
tile into its own `dst`; calls with the same `pipe_id` pair up in program order (the k-th call
on a pipe of one core with the k-th call on that pipe of the other). `nisa.core_barrier` makes
each listed core wait until all of them reach it, so that shared-HBM writes made before it are
seen after it. NKI docs (nki.isa.sendrecv, nki.isa.core_barrier; NeuronCore-v3 and newer).

In a multi-rank launch (nki.collectives) every program of every rank has a slot; sendrecv and
core_barrier stay within a rank, collectives meet across ranks (`CrossCore.gather`).

A program that ends, or fails, while another waits for it turns the wait into an error naming
both sides, and so does a wait that no running program can ever satisfy (a deadlock): kernels
never hang here.
"""
from __future__ import annotations

import threading
from enum import Enum
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from . import context
from . import rules
from .operands import engine, record, require_tile
from .tensor import NkiTensor


class dma_engine(Enum):  # noqa: N801 - NKI spelling
    """`nisa.dma_engine`: the transfer mechanism of `sendrecv`."""

    dma = 1
    gpsimd_dma = 2


# dma_engine.gpsimd_dma: at most this many bytes per partition, by element size (NKI docs).
GPSIMD_DMA_MAX_BYTES = {4: 1024, 2: 512, 1: 256}


class LaunchAborted(Exception):
    """Raised in a program whose sibling failed: its own result no longer matters."""


class CrossCore:
    """The meeting point of the programs of one concurrent launch (one per launch)."""

    def __init__(self, num_programs: int) -> None:
        self.n = num_programs
        self.cond = threading.Condition()
        self.mail: Dict[Tuple[Any, int, int, int], Any] = {}  # (pipe or key, k, from, to) -> data
        self.sends: Dict[Tuple[int, Any], int] = {}  # (slot, pipe or key) -> calls so far
        self.reads: Dict[Tuple[Any, int], int] = {}
        self.barriers = [0] * num_programs
        self.done = [False] * num_programs
        self.waiting: Dict[int, Optional[str]] = {}
        self.aborted = False

    # ---- lifecycle ------------------------------------------------------------------------
    def finish(self, program: int) -> None:
        with self.cond:
            self.done[program] = True
            self._changed()

    def abort(self) -> None:
        with self.cond:
            self.aborted = True
            self._changed()

    def check_abort(self) -> None:
        if self.aborted:
            raise LaunchAborted("another program of this launch failed")

    # ---- waiting --------------------------------------------------------------------------
    def _changed(self) -> None:
        """State moved: every waiter must look again before anyone calls it a deadlock."""
        self.waiting.clear()
        self.cond.notify_all()

    def wait(self, program: int, what: str, ready: Callable[[], bool], partners: Sequence[int]) -> None:
        """Block (holding `cond` between checks) until `ready()`; fail on abort or deadlock."""
        while not ready():
            if self.aborted:
                raise LaunchAborted("another program of this launch failed")
            ended = [p for p in partners if p != program and self.done[p]]
            if ended:
                rules.fail("lnc-sync", f"program {program} waits in {what} for program "
                           f"{ended[0]}, which has ended without reaching it")
            self.waiting[program] = what
            live = [p for p in range(self.n) if not self.done[p]]
            if all(self.waiting.get(p) for p in live):
                others = "; ".join(f"program {p} in {self.waiting[p]}" for p in live if p != program)
                rules.fail("lnc-sync", f"deadlock: program {program} waits in {what} while {others}")
            self.cond.wait(timeout=1.0)
        self.waiting.pop(program, None)

    def gather(self, slot: int, key: Tuple, group: Sequence[int], what: str, data: Any) -> list:
        """Contribute `data` to the k-th `key` collective of this slot; return every member's
        contribution in `group` order once all have contributed."""
        with self.cond:
            k = self.sends.get((slot, key), 0)
            self.sends[(slot, key)] = k + 1
            self.mail[(key, k, slot, -1)] = data  # type: ignore[index]
            self._changed()
            keys = [(key, k, s, -1) for s in group]
            self.wait(slot, f"{what} call {k}", lambda: all(x in self.mail for x in keys), group)
            out = [self.mail[x] for x in keys]
            self.reads[(key, k)] = self.reads.get((key, k), 0) + 1
            if self.reads[(key, k)] == len(group):
                for x in keys:
                    del self.mail[x]
                del self.reads[(key, k)]
            return out

    def undelivered(self) -> Optional[str]:
        """After the launch: a send nobody received (the receiver ended first), if any."""
        for (pipe, k, frm, to) in self.mail:
            if to >= 0:
                return f"program {frm}'s sendrecv(pipe_id={pipe}) call {k} sent to program {to}, which never received it"
        return None

    # ---- the two instructions ---------------------------------------------------------------
    def exchange(self, program: int, pipe: int, send_to: int, recv_from: int, data: np.ndarray) -> np.ndarray:
        with self.cond:
            k = self.sends.get((program, pipe), 0)
            self.sends[(program, pipe)] = k + 1
            self.mail[(pipe, k, program, send_to)] = data
            self._changed()
            key = (pipe, k, recv_from, program)
            self.wait(program, f"sendrecv(pipe_id={pipe}) call {k}", lambda: key in self.mail, (recv_from,))
            return self.mail.pop(key)

    def barrier(self, program: int, cores: Sequence[int]) -> None:
        with self.cond:
            self.barriers[program] += 1
            k = self.barriers[program]
            self._changed()
            self.wait(program, f"core_barrier call {k}",
                      lambda: all(self.barriers[c] >= k for c in cores), cores)


def _cross() -> Tuple[int, int, Optional[CrossCore], int]:
    """(program id, programs per rank, the launch's CrossCore, slot of this rank's program 0)."""
    ctx = context.current()
    base = ctx.slot - ctx.program_id
    return ctx.program_id, ctx.launch.num_programs, ctx.launch.cross, base  # type: ignore[return-value]


def _check_rank(instr: str, name: str, rank: Any, n: int) -> int:
    if not isinstance(rank, (int, np.integer)) or not 0 <= int(rank) < n:
        rules.fail("lnc-rank", f"{instr}: {name}={rank!r} must be a program id in 0..{n - 1} "
                   f"(this launch has {n} program(s))")
    return int(rank)


def sendrecv(src: NkiTensor, dst: NkiTensor, send_to_rank: int, recv_from_rank: int, pipe_id: int,
             dma_engine: dma_engine = dma_engine.dma, name: Optional[str] = None) -> None:
    """Send `src` to core `send_to_rank`'s `dst`, receive core `recv_from_rank`'s `src` into `dst`.

    Both tiles in SBUF, same dtype, same shape; ranks are program ids of this launch.
    """
    instr = "sendrecv"
    require_tile(instr, "src", src)
    require_tile(instr, "dst", dst)
    rules.check_buffer(src, ["sbuf"], instr, "src")
    rules.check_buffer(dst, ["sbuf"], instr, "dst")
    rules.check_dtype_equal(instr, "src", str(src.dtype), "dst", str(dst.dtype))
    if src.shape != dst.shape:
        rules.fail("shape-mismatch", f"{instr}: src {src.shape} and dst {dst.shape} must have the same shape")
    if dma_engine not in (type(dma_engine).dma, type(dma_engine).gpsimd_dma):
        rules.fail("operand-type", f"{instr}: dma_engine must be a nisa.dma_engine value, got {dma_engine!r}")
    if dma_engine is type(dma_engine).gpsimd_dma:
        limit = GPSIMD_DMA_MAX_BYTES.get(src.dtype.itemsize, 0)
        per_part = src.free_size * src.dtype.itemsize
        if per_part > limit:
            rules.fail("sendrecv-size", f"{instr}: dma_engine=gpsimd_dma moves at most {limit} bytes per "
                       f"partition for {src.dtype.itemsize}-byte types; src has {per_part}")
    me, n, cross, base = _cross()
    to = _check_rank(instr, "send_to_rank", send_to_rank, n)
    frm = _check_rank(instr, "recv_from_rank", recv_from_rank, n)
    data = np.array(src._read(instr))
    if cross is None:  # a single program: only a loop-back exchange can complete
        if to != me or frm != me:
            rules.fail("lnc-sync", f"{instr}: program {me} exchanges with {to}/{frm} in a launch of one program")
        received = data
    else:
        received = cross.exchange(base + me, int(pipe_id), base + to, base + frm, data)  # type: ignore[attr-defined]
    dst._write(received, instr)
    nbytes = src.size * src.dtype.itemsize
    record("DMA", "sendrecv", dst, [src], free_elems=dst.size, nbytes=nbytes, descriptors=src.partitions)


def core_barrier(data: NkiTensor, cores: Sequence[int], engine: Any = engine.gpsimd,
                 name: Optional[str] = None) -> None:
    """Wait until every core in `cores` reaches its matching barrier (data: the shared HBM tensor)."""
    instr = "core_barrier"
    require_tile(instr, "data", data)
    rules.check_buffer(data, ["shared_hbm"], instr, "data")
    me, n, cross, base = _cross()
    ids = tuple(_check_rank(instr, "cores", c, n) for c in cores)
    if me not in ids:
        rules.fail("lnc-sync", f"{instr}: program {me} is not among cores={tuple(cores)}")
    if cross is not None and len(ids) > 1:
        cross.barrier(base + me, tuple(base + c for c in ids))  # type: ignore[attr-defined]
