"""Give freed memory back to the operating system while streaming a checkpoint.

glibc's allocator keeps freed blocks below its (self-raising) thresholds in the process - tens of
megabytes - so a loop that reads, cuts and drops one tensor after another grows its resident
memory by that much even though it holds one tensor at a time. ``malloc_trim(0)`` returns those
blocks; :func:`release_freed_memory` calls it where it exists (glibc) and does nothing elsewhere.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache
from typing import Callable


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


def release_freed_memory() -> None:
    """Return the allocator's freed blocks to the OS (glibc ``malloc_trim``); a no-op elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
