"""Helpers shared by the emulator tests (kept out of conftest so tests can import them)."""
from __future__ import annotations

from typing import Any

import numpy as np

from qwen35_neuron.kernels.nki_emulator import language as nl


def tile(values: Any, dtype: Any = nl.float32, buffer: Any = nl.sbuf) -> Any:
    """A tensor holding `values`, written directly (no instruction recorded)."""
    arr = np.asarray(values)
    t = nl.ndarray(arr.shape, dtype, buffer=buffer)
    t._view[...] = arr.astype(np.float32).astype(t.dtype) if arr.dtype != t.dtype else arr
    return t


def val(t: Any) -> np.ndarray:
    """Current contents as float64 for comparisons."""
    return np.asarray(t.numpy(), dtype=np.float64)


def last_record(ctx: Any) -> Any:
    return ctx.recorder.records[-1]
