"""Memory guard of the nki-library conformance runner: refuse a case this machine cannot hold.

A case that needs more memory than the machine has free must be reported as too large, never
allowed to run the process out of memory (the kernel's OOM killer would end the whole run, and
with it every later case's result). Two checks, both here as pure functions so they are tested
without big allocations:

* before the kernel runs: its input and output arrays, as AWS's test built them, times
  `WORKING_FACTOR` (the emulator's working copies, measured), plus `RESERVE_BYTES`, must fit in
  MemAvailable; else the case is refused up front;
* while it runs: the process's address space may grow by at most MemAvailable minus
  `RESERVE_BYTES` (RLIMIT_AS), so an allocation past it raises MemoryError inside the case,
  which the runner reports as too large, instead of the machine killing the process.
"""
from __future__ import annotations

import resource
from pathlib import Path
from typing import Any, Iterable, Optional

GB = 1 << 30
RESERVE_BYTES = 2 * GB    # left free for the other processes on this shared machine
WORKING_FACTOR = 20       # bytes held per byte of the kernel's arrays: attention_cte at 32768 x 32768
#                           measured ~19x (32 MB of arrays, 0.6 GB over the runner's 0.3 GB) and ~15x


class CaseTooLarge(Exception):
    """The case needs more memory than this machine has available."""


def _kib_field(text: str, key: str, where: str) -> int:
    """The `key:  N kB` line of a /proc file's text, in bytes."""
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no {key} line in {where}")


def mem_available_bytes(meminfo: Optional[str] = None) -> int:
    """MemAvailable from /proc/meminfo (or the given text of it), in bytes."""
    text = Path("/proc/meminfo").read_text() if meminfo is None else meminfo
    return _kib_field(text, "MemAvailable", "/proc/meminfo")


def address_space_bytes(status: Optional[str] = None) -> int:
    """This process's VmSize from /proc/self/status (or the given text of it), in bytes."""
    text = Path("/proc/self/status").read_text() if status is None else status
    return _kib_field(text, "VmSize", "/proc/self/status")


def peak_rss_bytes() -> int:
    """The process's peak resident set so far (Linux reports it in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def array_bytes(values: Iterable[Any]) -> int:
    """Bytes of the array-like values (anything with `nbytes`); other values count 0."""
    return sum(int(getattr(v, "nbytes", 0) or 0) for v in values)


def estimated_need(arrays_bytes: int, factor: float = WORKING_FACTOR) -> int:
    return int(arrays_bytes * factor)


def too_large(need_bytes: int, available_bytes: int, reserve_bytes: int = RESERVE_BYTES) -> Optional[str]:
    """Why a case needing `need_bytes` cannot run with `available_bytes` free, or None when it fits."""
    if need_bytes + reserve_bytes <= available_bytes:
        return None
    return (f"too large for this machine (needs ~{need_bytes / GB:.1f} GB, "
            f"{available_bytes / GB:.1f} GB available)")


def growth_limit(address_space: int, available_bytes: int, reserve_bytes: int = RESERVE_BYTES) -> int:
    """The RLIMIT_AS for one case: today's address space plus what is free beyond the reserve."""
    return address_space + max(available_bytes - reserve_bytes, 0)
