"""GpSimd pattern instructions: `iota` and `affine_select` (SBUF only, never PSUM).

Both evaluate the affine expression `offset + p * channel_multiplier + sum_k step_k * i_k`
over a pattern `[[step, num], ...]` (up to 4-D, outermost first) in integer arithmetic.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from . import dtypes as dt
from . import operators as nlops
from . import rules
from .operands import check_compute, read2d, record, require_tile
from .tensor import NkiTensor


def _affine(instr: str, pattern: Sequence[Sequence[int]], parts: int, free: int,
            offset: int, channel_multiplier: int) -> np.ndarray:
    """[P, F] int64 values of the affine expression, checked against dst's free size."""
    pat = [(int(step), int(num)) for step, num in pattern]
    if not 1 <= len(pat) <= 4:
        rules.fail("pattern", f"{instr}: pattern has {len(pat)} dims; 1 to 4 allowed")
    total = int(np.prod([n for _, n in pat]))
    if total != free:
        rules.fail("pattern", f"{instr}: pattern covers {total} elements but dst has {free} per partition")
    vals = np.zeros([n for _, n in pat], dtype=np.int64)
    for k, (step, num) in enumerate(pat):
        shape = [1] * len(pat)
        shape[k] = num
        vals = vals + step * np.arange(num, dtype=np.int64).reshape(shape)
    lanes = np.arange(parts, dtype=np.int64).reshape(parts, 1) * int(channel_multiplier)
    return int(offset) + lanes + vals.reshape(1, -1)


def iota(dst: NkiTensor, pattern: Sequence[Sequence[int]], offset: int = 0,
         channel_multiplier: int = 0, name: Optional[str] = None) -> None:
    """dst[p, i...] = offset + p*channel_multiplier + sum(step_k * i_k), cast to dst dtype."""
    instr = "iota"
    require_tile(instr, "dst", dst)
    check_compute(instr, dst=dst)
    rules.check_buffer(dst, ["sbuf"], instr, "dst")
    vals = _affine(instr, pattern, dst.partitions, dst.free_size, offset, channel_multiplier)
    vals = vals.astype(np.int32).astype(np.int64)  # int32 arithmetic on the engine
    dst._write(vals if dt.is_int(dst.dtype) else vals.astype(np.float32), instr)
    record("GpSimd", "iota", dst, [])


def affine_select(dst: NkiTensor, pattern: Sequence[Sequence[int]], channel_multiplier: int,
                  on_true_tile: NkiTensor, on_false_value: Any, cmp_op: Any = nlops.equal,
                  offset: int = 0, name: Optional[str] = None) -> None:
    """dst = on_true_tile where cmp_op(affine, 0) holds, else on_false_value (fp32 constant)."""
    instr = "affine_select"
    require_tile(instr, "dst", dst)
    require_tile(instr, "on_true_tile", on_true_tile)
    check_compute(instr, dst=dst, on_true_tile=on_true_tile)
    rules.check_buffer(dst, ["sbuf"], instr, "dst")
    rules.check_buffer(on_true_tile, ["sbuf"], instr, "on_true_tile")
    rules.check_same_partitions(instr, "dst", dst.partitions, on_true_tile=on_true_tile.partitions)
    rules.check_same_free(instr, "dst", dst.free_size, on_true_tile=on_true_tile.free_size)
    rules.check_number(instr, "on_false_value", on_false_value)
    rules.check_op(instr, cmp_op, alu=True, arity=2)
    affine = _affine(instr, pattern, dst.partitions, dst.free_size, offset, channel_multiplier)
    pred = np.asarray(cmp_op.fn(affine, np.int64(0))) != 0
    same = dst.dtype == on_true_tile.dtype
    src = read2d(on_true_tile, instr, as_float=not same)
    false_val = dt.round_to(np.asarray(np.float32(on_false_value)), dst.dtype)
    if same:
        out = np.where(pred, src, false_val).astype(dst.dtype)
    else:
        out = np.where(pred, src, np.float32(on_false_value)).astype(np.float32)
    dst._write(out, instr)
    record("GpSimd", "affine_select", dst, [on_true_tile])
