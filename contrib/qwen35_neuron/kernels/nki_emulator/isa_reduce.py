"""Reductions and scans along the free axis (VectorE), and the GpSimd partition reduce.

All in fp32. `tensor_reduce` reduces trailing free axes only; the partition axis is never
reduced by VectorE. `tensor_tensor_scan` is the per-partition recurrence
`r[i] = op1(op0(data0[i], r[i-1]), data1[i])`, evaluated step by step in fp32 exactly as
the engine streams it.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np

from . import context
from . import dtypes as dt
from . import operators as nlops
from . import rules
from .isa_scalar import reduce_cmd
from .operands import (check_compute, check_same_layout, column_or_scalar, compute, read2d,
                       record, require_tile)
from .tensor import NkiTensor


def _reduce_op(instr: str, op: Any) -> Any:
    op = nlops.REDUCE_ALIASES.get(getattr(op, "name", ""), op)
    rules.check_op(instr, op, alu=True)
    if not op.reducible:
        rules.fail("operator", f"{instr}: nl.{op.name} is not a legal reduction operator")
    return op


def _reduce(op: Any, x: np.ndarray, axis: Any) -> np.ndarray:
    if op is nlops.add:
        return x.sum(axis=axis, dtype=np.float32)
    if op is nlops.multiply:
        return x.prod(axis=axis, dtype=np.float32)
    if op is nlops.maximum:
        return x.max(axis=axis)
    if op is nlops.minimum:
        return x.min(axis=axis)
    return np.asarray(np.frompyfunc(op.fn, 2, 1).reduce(x, axis=axis), dtype=x.dtype)


def tensor_reduce(dst: NkiTensor, op: Any, data: NkiTensor, axis: Union[int, Sequence[int]],
                  negate: bool = False, keepdims: bool = False, name: Optional[str] = None) -> None:
    """Reduce trailing free axes of data into dst (negate multiplies the result by -1)."""
    instr = "tensor_reduce"
    require_tile(instr, "dst", dst)
    require_tile(instr, "data", data)
    check_compute(instr, dst=dst, data=data)
    rop = _reduce_op(instr, op)
    axes = tuple(sorted({(int(a) % data.ndim) for a in ((axis,) if np.isscalar(axis) else axis)}))
    rules.check_reduce_axes(instr, axes, data.ndim)
    int_math = rop.bitvec
    if int_math and not (dt.is_int(data.dtype) and dt.is_int(dst.dtype)):
        rules.fail("operator", f"{instr}: bitvec reduction nl.{rop.name} needs integer tiles")
    view = np.asarray(data._read(instr))
    x = view.astype(np.int64) if int_math else view.astype(np.float32)
    out = compute(lambda: _reduce(rop, x, axes))
    if negate:
        out = -out
    kept = int(np.prod([data.shape[a] for a in range(1, data.ndim) if a not in axes]))
    rules.check_same_partitions(instr, "data", data.partitions, dst=dst.partitions)
    rules.check_same_free(instr, "the reduction result", kept, dst=dst.free_size)
    dst._write(out.reshape(dst.partitions, -1), instr)
    record("Vector", f"tensor_reduce.{rop.name}", dst, [data], free_elems=data.free_size)


def tensor_scalar_reduce(dst: NkiTensor, data: NkiTensor, op0: Any, operand0: Any, reduce_op: Any,
                         reduce_res: Optional[NkiTensor] = None, reverse0: bool = False,
                         reduce_cmd: reduce_cmd = reduce_cmd.reset_reduce, reduce_init: Any = None,
                         reduce_res_negate: bool = False, name: Optional[str] = None) -> None:
    """dst = data op0 operand0, plus a free-axis reduction into VectorE lane registers."""
    instr = "tensor_scalar_reduce"
    require_tile(instr, "dst", dst)
    require_tile(instr, "data", data)
    check_compute(instr, dst=dst, data=data, reduce_res=reduce_res)
    check_same_layout(instr, dst, data=data)
    rules.check_op(instr, op0, alu=True, arity=2)
    rop = _reduce_op(instr, reduce_op)
    p = data.partitions
    s = column_or_scalar(instr, "operand0", operand0, p, require_fp32=True)
    s = np.float32(s) if isinstance(s, float) else s
    x = read2d(data, instr)
    y = (compute(op0.fn, s, x) if reverse0 else compute(op0.fn, x, s)).astype(np.float32)
    dst._write(y, instr)
    ctx = context.current()
    lanes = slice(data.start_partition(), data.start_partition() + p)
    cmd_t = type(reduce_cmd)
    if reduce_cmd in (cmd_t.reset, cmd_t.reset_reduce):
        ctx.vec_regs[lanes] = rop.identity
    elif reduce_cmd == cmd_t.load_reduce:
        init = column_or_scalar(instr, "reduce_init", 0.0 if reduce_init is None else reduce_init, p)
        ctx.vec_regs[lanes] = np.asarray(init, dtype=np.float32).reshape(-1)
    if reduce_cmd in (cmd_t.reduce, cmd_t.reset_reduce, cmd_t.load_reduce):
        part = compute(lambda: _reduce(rop, y, 1))
        ctx.vec_regs[lanes] = compute(rop.fn, ctx.vec_regs[lanes], part)
    if reduce_res is not None:
        rules.check_column(instr, "reduce_res", reduce_res.shape, p)
        regs = ctx.vec_regs[lanes].reshape(-1, 1)
        reduce_res._write(-regs if reduce_res_negate else regs.copy(), instr)
    reads = [data] + ([operand0] if isinstance(operand0, NkiTensor) else [])
    record("Vector", "tensor_scalar_reduce", dst, reads)


def tensor_tensor_scan(dst: NkiTensor, data0: NkiTensor, data1: NkiTensor, initial: Any,
                       op0: Any, op1: Any, reverse0: bool = False, reverse1: bool = False,
                       name: Optional[str] = None) -> None:
    """Per-partition scan r[i] = op1(op0(data0[i], r[i-1]), data1[i]), r[-1] = initial."""
    instr = "tensor_tensor_scan"
    for n, t in (("dst", dst), ("data0", data0), ("data1", data1)):
        require_tile(instr, n, t)
    check_compute(instr, dst=dst, data0=data0, data1=data1)
    for op in (op0, op1):
        rules.check_op(instr, op, alu=True, arity=2)
    check_same_layout(instr, dst, data0=data0, data1=data1)
    rules.check_one_psum_input(instr, data0=data0, data1=data1)
    p = data0.partitions
    init = column_or_scalar(instr, "initial", initial, p)
    a, b = read2d(data0, instr), read2d(data1, instr)
    prev = np.broadcast_to(np.asarray(init, dtype=np.float32).reshape(-1), (p,)).copy()
    out = np.empty_like(a)
    with np.errstate(all="ignore"):
        for i in range(a.shape[1]):
            t = op0.fn(prev, a[:, i]) if reverse0 else op0.fn(a[:, i], prev)
            t = np.asarray(t, dtype=np.float32)
            prev = np.asarray(op1.fn(b[:, i], t) if reverse1 else op1.fn(t, b[:, i]), dtype=np.float32)
            out[:, i] = prev
    dst._write(out, instr)
    reads = [data0, data1] + ([initial] if isinstance(initial, NkiTensor) else [])
    record("Vector", "tensor_tensor_scan", dst, reads, n_inputs=2)


def tensor_partition_reduce(dst: NkiTensor, op: Any, data: NkiTensor, name: Optional[str] = None) -> None:
    """Reduce across partitions on GpSimd (SBUF only): dst[1, F] = reduce_p data[p, F]."""
    instr = "tensor_partition_reduce"
    require_tile(instr, "dst", dst)
    require_tile(instr, "data", data)
    check_compute(instr, dst=dst, data=data)
    rules.check_no_psum(instr, "GpSimd", dst=dst, data=data)
    rop = _reduce_op(instr, op)
    x = read2d(data, instr)
    rules.check_same_partitions(instr, "the result", 1, dst=dst.partitions)
    rules.check_same_free(instr, "data", data.free_size, dst=dst.free_size)
    dst._write(compute(lambda: _reduce(rop, x, 0)).reshape(1, -1), instr)
    record("GpSimd", f"tensor_partition_reduce.{rop.name}", dst, [data], free_elems=data.free_size)


BN_STATS_FMAX = 512  # nl.tile_size.bn_stats_fmax


def bn_stats(dst: NkiTensor, data: NkiTensor, name: Optional[str] = None) -> None:
    """dst[p, :6] = (count, mean, variance*count) of the even then of the odd elements of
    partition p (fp32; at most 512 elements per partition)."""
    instr = "bn_stats"
    require_tile(instr, "dst", dst)
    require_tile(instr, "data", data)
    check_compute(instr, dst=dst, data=data)
    rules.check_same_partitions(instr, "data", data.partitions, dst=dst.partitions)
    if data.free_size > BN_STATS_FMAX:
        rules.fail("shape-mismatch", f"{instr}: data has {data.free_size} elements per partition > "
                   f"{BN_STATS_FMAX} (nl.tile_size.bn_stats_fmax)")
    rules.check_same_free(instr, "the statistics", 6, dst=dst.free_size)
    x = read2d(data, instr).astype(np.float64)
    out = np.zeros((x.shape[0], 6), dtype=np.float64)
    for k, part in enumerate((x[:, 0::2], x[:, 1::2])):
        n = part.shape[1]
        mean = part.mean(axis=1) if n else np.zeros(x.shape[0])
        out[:, 3 * k] = n
        out[:, 3 * k + 1] = mean
        out[:, 3 * k + 2] = ((part - mean[:, None]) ** 2).sum(axis=1) if n else 0.0
    dst._write(out.astype(np.float32), instr)
    record("Vector", "bn_stats", dst, [data], free_elems=data.free_size)


def bn_aggr(dst: NkiTensor, data: NkiTensor, name: Optional[str] = None) -> None:
    """dst[p, :2] = (mean, variance) aggregated from the (count, mean, variance*count) triples
    of one or more bn_stats outputs in data[p] (fp32)."""
    instr = "bn_aggr"
    require_tile(instr, "dst", dst)
    require_tile(instr, "data", data)
    check_compute(instr, dst=dst, data=data)
    rules.check_same_partitions(instr, "data", data.partitions, dst=dst.partitions)
    if data.free_size % 3:
        rules.fail("shape-mismatch", f"{instr}: data has {data.free_size} elements per partition; "
                   "needs (count, mean, variance*count) triples")
    rules.check_same_free(instr, "mean and variance", 2, dst=dst.free_size)
    t = read2d(data, instr).astype(np.float64).reshape(data.partitions, -1, 3)
    count, mean, m2 = t[..., 0], t[..., 1], t[..., 2]
    total = count.sum(axis=1)
    safe = np.where(total > 0, total, 1.0)
    grand = (count * mean).sum(axis=1) / safe
    var = (m2 + count * (mean - grand[:, None]) ** 2).sum(axis=1) / safe
    dst._write(np.stack([grand, var], axis=1).astype(np.float32), instr)
    record("Vector", "bn_aggr", dst, [data], free_elems=data.free_size)
