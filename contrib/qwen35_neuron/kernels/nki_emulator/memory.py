"""Buffers, allocations and the per-program SBUF/PSUM budget.

Budget accounting mirrors what the NKI compiler's allocator would see: a tensor occupies
memory from its first use by an instruction until it is dead. In eager Python "dead" means
the tensor object (and every view of it) has been garbage-collected, which a
`weakref.finalize` observes. Counting from first use rather than from `nl.ndarray` keeps
the common loop pattern `t = nl.ndarray(...); use(t)` from double-counting the previous
iteration's `t`, which is still bound while the new one is created.
"""
from __future__ import annotations

import itertools
import weakref
from enum import Enum
from typing import Any, Optional, Sequence

import numpy as np

from . import dtypes as dt
from . import rules

# Usable SBUF per partition. trn2 has 28 MiB SBUF = 128 partitions x 224 KiB
# (aws-neuron-sdk nki/guides/architecture/trainium2_arch.rst); the compiler keeps part of it
# (nki-library bwmm_bwd_dropless budgets 224 KiB - 16 KiB - 528 B). We budget 192 KiB, a
# conservative team choice, so a kernel that fits here fits on hardware.
SBUF_BYTES_PER_PARTITION = 192 * 1024
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


class _Footprint:
    """What an allocation holds in the budget; shared with its finalizer (no cycle)."""

    __slots__ = ("kind", "amount", "resident")

    def __init__(self, kind: str, amount: int) -> None:
        self.kind, self.amount, self.resident = kind, amount, False


class Allocation:
    """The storage behind one `nl.ndarray` (views of it share this object)."""

    __slots__ = ("id", "region", "name", "data", "state", "footprint", "tracker", "__weakref__")

    def __init__(self, region: MemoryRegion, name: str, data: np.ndarray,
                 tracker: Optional["MemoryTracker"], footprint: Optional[_Footprint]) -> None:
        self.id = next(_ids)
        self.region, self.name, self.data = region, name, data
        self.state = (np.zeros(data.shape, dtype=np.int8)
                      if region is MemoryRegion.psum else None)
        self.footprint, self.tracker = footprint, tracker

    def touch(self, where: str) -> None:
        """Called by every instruction operand: the first touch makes the tensor resident."""
        fp = self.footprint
        if fp is not None and not fp.resident and self.tracker is not None:
            self.tracker.make_resident(fp, f"{where} ({self.name or 'unnamed'})")


class MemoryTracker:
    """Live SBUF bytes and PSUM banks per partition for one program (one NeuronCore)."""

    def __init__(self, sbuf_budget: int = SBUF_BYTES_PER_PARTITION) -> None:
        self.sbuf_budget = sbuf_budget
        self.sbuf_used = 0
        self.psum_banks = 0
        self.peak_sbuf = 0
        self.peak_psum_banks = 0

    def allocate(self, shape: Sequence[int], dtype: Any, region: MemoryRegion, name: str = "",
                 address: Any = None, fill: Any = None) -> Allocation:
        """Create storage, check static limits, register the budget finalizer."""
        shape = tuple(int(s) for s in shape)
        dtype = dt.as_dtype(dtype)
        where = f"nl.ndarray({shape}, {dt.short_name(dtype)}, {region.value})"
        rules.check_positive_shape(shape, where)
        if dtype not in dt.ALL_DTYPES:
            rules.fail("dtype", f"{where}: dtype {dtype} is not an NKI dtype")
        footprint = None
        if region.on_chip:
            rules.check_partition_dim(shape[0], where)
            per_part = int(np.prod(shape[1:], dtype=np.int64)) * dt.itemsize(dtype)
            if region is MemoryRegion.psum:
                rules.check_psum_tile(per_part, where)
                rules.check_psum_address(address, where)
                footprint = _Footprint("psum", 1)  # a PSUM tensor holds a whole bank
            else:
                footprint = _Footprint("sbuf", per_part)
        value = dt.uninit_fill(dtype) if fill is None else fill
        data = np.empty(shape, dtype=dtype)
        data[...] = dt.round_to(np.asarray(value), dtype) if fill is not None else value
        alloc = Allocation(region, name, data, self if footprint else None, footprint)
        if footprint is not None:
            weakref.finalize(alloc, self._release, footprint)
        return alloc

    def make_resident(self, fp: _Footprint, where: str) -> None:
        if fp.kind == "psum":
            rules.check_psum_banks(self.psum_banks + fp.amount, where)
            self.psum_banks += fp.amount
            self.peak_psum_banks = max(self.peak_psum_banks, self.psum_banks)
        else:
            rules.check_sbuf_budget(self.sbuf_used + fp.amount, self.sbuf_budget, where)
            self.sbuf_used += fp.amount
            self.peak_sbuf = max(self.peak_sbuf, self.sbuf_used)
        fp.resident = True

    def _release(self, fp: _Footprint) -> None:
        if not fp.resident:
            return
        if fp.kind == "psum":
            self.psum_banks -= fp.amount
        else:
            self.sbuf_used -= fp.amount
        fp.resident = False


def wrap_host_array(array: np.ndarray, region: MemoryRegion, name: str) -> Allocation:
    """Use a caller's array as HBM storage without copying (kernel writes are visible)."""
    dtype = array.dtype
    if dtype not in dt.ALL_DTYPES:
        rules.fail("dtype", f"kernel argument {name!r} has dtype {dtype}, not an NKI dtype "
                   "(float64/int64 must be cast by the caller)")
    return Allocation(region, name, array, None, None)
