"""Buffers, allocations, manual placement (`address=`) and the per-program SBUF/PSUM budget.

Budgets follow live ranges, as the NKI compiler's allocator sees them: a tensor occupies memory
from the first instruction that touches it to the last one (not from `nl.ndarray` to the death of
its Python object). The eager emulator learns the last use only when the program has ended, so
`MemoryTracker.check()` sweeps the recorded ranges then (after every program of a launch, and when
a top-level `fresh_program()` block ends) and fails naming the instruction at the peak and the
tensors live there.

`address=(partition, byte_offset)` places a tensor at a fixed spot: every tensor placed in the
same bytes shares the same storage (one per-program byte array per buffer), so two tensors at
one address alias exactly as on hardware, and the budget counts those bytes (PSUM: those banks)
once however many tensors sit there.
"""
from __future__ import annotations

import itertools
from enum import Enum
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import dtypes as dt
from . import rules

# Usable SBUF per partition. trn2 has 28 MiB SBUF = 128 partitions x 224 KiB
# (aws-neuron-sdk nki/guides/architecture/trainium2_arch.rst); the compiler keeps part of it
# (nki-library bwmm_bwd_dropless budgets 224 KiB - 16 KiB - 528 B). We budget 192 KiB, a
# conservative team choice, so a kernel that fits here fits on hardware.
SBUF_BYTES_PER_PARTITION = 192 * 1024
SBUF_PHYSICAL_BYTES = 224 * 1024  # placement bound for address=
PSUM_BANK_BYTES = rules.PSUM_BANK_BYTES
PSUM_NUM_BANKS = rules.PSUM_NUM_BANKS


class MemoryRegion(Enum):
    """Where a tensor lives. `nl.hbm` is an alias of `private_hbm`, as in NKI."""

    sbuf = "sbuf"
    psum = "psum"
    private_hbm = "private_hbm"
    shared_hbm = "shared_hbm"

    @property
    def on_chip(self) -> bool:
        return self in (MemoryRegion.sbuf, MemoryRegion.psum)

    @property
    def is_hbm(self) -> bool:
        return not self.on_chip


def as_region(buffer: Any) -> MemoryRegion:
    """Accept only real buffer tokens; NKI >= 0.3 rejects strings such as 'sbuf'."""
    if isinstance(buffer, MemoryRegion):
        return buffer
    rules.fail("buffer", f"buffer must be nl.sbuf, nl.psum, nl.hbm, nl.private_hbm or "
               f"nl.shared_hbm, got {buffer!r}")
    raise AssertionError  # unreachable


# Write-state values kept per PSUM element, for the nc_matmul accumulate rules.
NEVER_WRITTEN, WRITTEN_BY_MATMUL, WRITTEN_BY_OTHER = 0, 1, 2

_ids = itertools.count(1)


class Footprint:
    """What one on-chip allocation holds, and the instruction range that uses it."""

    __slots__ = ("kind", "amount", "placed", "name", "first", "last")

    def __init__(self, kind: str, amount: int, placed: Optional[Tuple[int, int]], name: str) -> None:
        self.kind, self.amount, self.placed, self.name = kind, amount, placed, name
        self.first: Optional[int] = None  # index of the first instruction touching it
        self.last: int = -1


class Allocation:
    """The storage behind one `nl.ndarray` (views of it share this object)."""

    __slots__ = ("id", "region", "name", "data", "state", "footprint", "tracker", "__weakref__")

    def __init__(self, region: MemoryRegion, name: str, data: np.ndarray,
                 tracker: Optional["MemoryTracker"], footprint: Optional[Footprint],
                 state: Optional[np.ndarray] = None) -> None:
        self.id = next(_ids)
        self.region, self.name, self.data = region, name, data
        if state is None and region is MemoryRegion.psum:
            state = np.zeros(data.shape, dtype=np.int8)
        self.state = state
        self.footprint, self.tracker = footprint, tracker

    def touch(self, where: str) -> None:
        """Called by every instruction operand: extends the live range to this instruction."""
        fp = self.footprint
        if fp is not None and self.tracker is not None:
            now = self.tracker.clock()
            if fp.first is None:
                fp.first = now
            fp.last = max(fp.last, now)


class MemoryTracker:
    """Allocations, placed storage and the live-range budget of one program (one NeuronCore)."""

    def __init__(self, sbuf_budget: int = SBUF_BYTES_PER_PARTITION,
                 clock: Optional[Callable[[], int]] = None,
                 op_name: Optional[Callable[[int], str]] = None) -> None:
        self.sbuf_budget = sbuf_budget
        self.clock: Callable[[], int] = clock or (lambda: 0)
        self._op_name = op_name or (lambda i: f"instruction {i}")
        self.footprints: List[Footprint] = []
        self._storage: Dict[MemoryRegion, np.ndarray] = {}
        self.peak_sbuf = 0
        self.peak_psum_banks = 0

    # ---- allocation -----------------------------------------------------------------------
    def allocate(self, shape: Sequence[int], dtype: Any, region: MemoryRegion, name: str = "",
                 address: Any = None, fill: Any = None) -> Allocation:
        """Create (or, with address=, place) storage and register its footprint."""
        shape = tuple(int(s) for s in shape)
        dtype = dt.as_dtype(dtype)
        where = f"nl.ndarray({shape}, {dt.short_name(dtype)}, {region.value})"
        rules.check_positive_shape(shape, where)
        if dtype in dt.MX_DTYPES:
            rules.fail("not-emulated", f"{where}: MX packed dtypes (microscaling, trn3) are not emulated")
        if dtype not in dt.ALL_DTYPES:
            rules.fail("dtype", f"{where}: dtype {dtype} is not an NKI dtype")
        footprint, data, state = None, None, None
        if region.on_chip:
            rules.check_partition_dim(shape[0], where)
            per_part = int(np.prod(shape[1:], dtype=np.int64)) * dt.itemsize(dtype)
            placed = None
            if region is MemoryRegion.psum:
                rules.check_psum_tile(per_part, where)
                rules.check_psum_address(address, where)
            if address is not None:
                placed = (int(address[1]), int(address[1]) + per_part)
                data, state = self._place(region, shape, dtype, address, per_part, where)
            amount = 1 if region is MemoryRegion.psum else per_part  # a PSUM tensor holds a bank
            footprint = Footprint(region.value, amount, placed, name or "unnamed")
            self.footprints.append(footprint)
        if data is None:
            data = np.empty(shape, dtype=dtype)
        value = dt.uninit_fill(dtype) if fill is None else fill
        data[...] = dt.round_to(np.asarray(value), dtype) if fill is not None else value
        if state is not None:
            state[...] = NEVER_WRITTEN
        return Allocation(region, name, data, self if footprint else None, footprint, state)

    def _place(self, region: MemoryRegion, shape: Tuple[int, ...], dtype: np.dtype, address: Any,
               per_part: int, where: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """A view of this program's byte storage at address=(partition, byte offset).

        The data is shared by every tensor placed over the same bytes; the PSUM write state
        (for nc_matmul's accumulate=None) is not: it belongs to the tensor, as the compiler's
        "first write to a tensor overwrites" is decided per tensor (nki-library's attention_cte
        allocates one PSUM tile per q group at the same bank and relies on that)."""
        p0, off = int(address[0]), int(address[1])
        size = PSUM_NUM_BANKS * PSUM_BANK_BYTES if region is MemoryRegion.psum else SBUF_PHYSICAL_BYTES
        if p0 < 0 or p0 + shape[0] > rules.PMAX or off < 0 or off + per_part > size:
            rules.fail("address", f"{where}: address {tuple(address)} puts partitions {p0}..{p0 + shape[0] - 1}"
                       f" and bytes {off}..{off + per_part - 1} outside {region.value} "
                       f"({rules.PMAX} partitions x {size} bytes)")
        if off % dtype.itemsize:
            rules.fail("address", f"{where}: byte offset {off} is not aligned to the {dtype.itemsize}-byte dtype")
        if region not in self._storage:
            self._storage[region] = np.zeros((rules.PMAX, size), np.uint8)
        raw = self._storage[region]
        data = raw[p0:p0 + shape[0], off:off + per_part].view(dtype).reshape(shape)
        state = np.zeros(shape, dtype=np.int8) if region is MemoryRegion.psum else None
        return data, state

    # ---- the live-range budget ------------------------------------------------------------
    def check(self) -> None:
        """Sweep the live ranges: peak SBUF bytes and PSUM banks per partition within budget."""
        used = [fp for fp in self.footprints if fp.first is not None]
        for kind in ("sbuf", "psum"):
            fps = [fp for fp in used if fp.kind == kind]
            peak, at, live = _peak(fps, kind)
            if kind == "sbuf":
                self.peak_sbuf = max(self.peak_sbuf, peak)
                if peak > self.sbuf_budget:
                    rules.fail("sbuf-capacity", f"{self._op_name(at)}: live SBUF {peak} bytes per "
                               f"partition > budget {self.sbuf_budget} bytes per partition; live: "
                               f"{_largest(live, 'sbuf')}")
            else:
                self.peak_psum_banks = max(self.peak_psum_banks, peak)
                if peak > PSUM_NUM_BANKS:
                    rules.fail("psum-capacity", f"{self._op_name(at)}: {peak} PSUM banks live at once > "
                               f"{PSUM_NUM_BANKS} banks per partition (8 x 2 KiB); live: {_largest(live, 'psum')}")


def _usage(live: List[Footprint], kind: str) -> int:
    """Bytes per partition (SBUF) or banks (PSUM) the live set holds; placed bytes count once."""
    loose = sum(fp.amount for fp in live if fp.placed is None)
    spans = sorted(fp.placed for fp in live if fp.placed is not None)
    if kind == "psum":
        banks = {b for lo, hi in spans for b in range(lo // PSUM_BANK_BYTES, -(-hi // PSUM_BANK_BYTES))}
        return loose + len(banks)
    total, end = 0, -1
    for lo, hi in spans:  # union of byte intervals
        if hi > end:
            total += hi - max(lo, end)
            end = hi
    return loose + total


def _peak(fps: List[Footprint], kind: str) -> Tuple[int, int, List[Footprint]]:
    """(peak usage, instruction index at the peak, footprints live there)."""
    events = sorted([(fp.first, 1, i) for i, fp in enumerate(fps)] +
                    [(fp.last + 1, 0, i) for i, fp in enumerate(fps)])  # ends sort before starts
    placed_live: Dict[int, Footprint] = {}
    loose = placed = peak = at = 0
    for t, starts, i in events:
        fp = fps[i]
        if fp.placed is None:
            loose += fp.amount if starts else -fp.amount
        else:
            if starts:
                placed_live[i] = fp
            else:
                placed_live.pop(i, None)
            placed = _usage(list(placed_live.values()), kind)
        if starts and loose + placed > peak:
            peak, at = loose + placed, t
    return peak, at, [fp for fp in fps if fp.first <= at <= fp.last]


def _largest(live: List[Footprint], kind: str) -> str:
    unit = "bytes" if kind == "sbuf" else "bank"
    top = sorted(live, key=lambda fp: -fp.amount)[:6]
    more = f" and {len(live) - len(top)} more" if len(live) > len(top) else ""
    return ", ".join(f"{fp.name} ({fp.amount} {unit}{'' if fp.placed is None else ' at ' + str(fp.placed[0])})"
                     for fp in top) + more


def wrap_host_array(array: np.ndarray, region: MemoryRegion, name: str) -> Allocation:
    """Use a caller's array as HBM storage without copying (kernel writes are visible)."""
    dtype = array.dtype
    if dtype not in dt.ALL_DTYPES:
        rules.fail("dtype", f"kernel argument {name!r} has dtype {dtype}, not an NKI dtype "
                   "(float64/int64 must be cast by the caller)")
    return Allocation(region, name, array, None, None)
