"""VectorE element-wise instructions (some may run on ScalarE or GpSimd via `engine=`).

Arithmetic is fp32 (all-integer operands: int64, then saturated to the dst dtype); results
are rounded to dst's dtype on write. Operand layouts: equal partition counts and equal
elements per partition; `[P, 1]` tiles or Python numbers for scalar operands.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import context
from . import dtypes as dt
from . import operators as nlops
from . import rules
from .operands import (all_int, check_compute, check_same_layout, column_or_scalar, compute,
                       engine, half_precision, in_sbuf, read2d, record, require_tile,
                       resolve_engine)
from .tensor import NkiTensor

_SCALAR_ENGINE_TS_COMBOS = (("multiply", "add"), ("multiply", None), ("add", None))


def _apply(op: Any, a: Any, b: Any, reverse: bool) -> np.ndarray:
    if op.arity == 1:
        return compute(op.fn, a)
    return compute(op.fn, b, a) if reverse else compute(op.fn, a, b)


def _contiguous_inner(*tensors: NkiTensor) -> bool:
    return all(t.ndim == 0 or t._view.strides[-1] == t.dtype.itemsize for t in tensors)


def _check_alu_op(instr: str, op: Any, int_math: bool) -> None:
    rules.check_op(instr, op, alu=True)
    if op.bitvec and not int_math:
        rules.fail("operator", f"{instr}: bitvec operator nl.{op.name} needs integer tiles")


def tensor_tensor(dst: NkiTensor, data1: NkiTensor, data2: NkiTensor, op: Any,
                  engine: Any = engine.unknown, name: Optional[str] = None) -> None:
    """dst = data1 op data2, element-wise."""
    instr = "tensor_tensor"
    for n, t in (("dst", dst), ("data1", data1), ("data2", data2)):
        require_tile(instr, n, t)
    check_compute(instr, dst=dst, data1=data1, data2=data2)
    int_math = all_int(dst, data1, data2)
    _check_alu_op(instr, op, int_math)
    rules.check_op(instr, op, arity=2)
    check_same_layout(instr, dst, data1=data1, data2=data2)
    rules.check_one_psum_input(instr, data1=data1, data2=data2)
    any_psum = any(t.buffer.value == "psum" for t in (dst, data1, data2))
    default = "GpSimd" if (op is nlops.power or
                           (int_math and not any_psum and
                            all(t.dtype in (dt.int32, dt.uint32) for t in (dst, data1, data2)))) else "Vector"
    eng = resolve_engine(instr, engine, default, ("Vector", "GpSimd"))
    if eng == "GpSimd":
        rules.check_no_psum(instr, "GpSimd", dst=dst, data1=data1, data2=data2)
    a = read2d(data1, instr, as_float=not int_math)
    b = read2d(data2, instr, as_float=not int_math)
    if int_math:
        a, b = a.astype(np.int64), b.astype(np.int64)
    dst._write(_apply(op, a, b, False), instr)
    perf = 2 if (eng == "Vector" and in_sbuf(data1, data2) and half_precision(dst, data1, data2)) else 1
    record(eng, f"tensor_tensor.{op.name}", dst, [data1, data2], n_inputs=2, perf_factor=perf)


def tensor_scalar(dst: NkiTensor, data: NkiTensor, op0: Any, operand0: Any, reverse0: bool = False,
                  op1: Any = None, operand1: Any = None, reverse1: bool = False,
                  engine: Any = engine.unknown, name: Optional[str] = None) -> None:
    """dst = (data op0 operand0) op1 operand1; operands are numbers or [P, 1] tiles."""
    instr = "tensor_scalar"
    require_tile(instr, "dst", dst)
    require_tile(instr, "data", data)
    check_compute(instr, dst=dst, data=data)
    check_same_layout(instr, dst, data=data)
    int_math = all_int(dst, data) and all(
        isinstance(v, (int, np.integer)) or (isinstance(v, NkiTensor) and dt.is_int(v.dtype))
        for v in (operand0, operand1) if v is not None)
    p = data.partitions
    x = read2d(data, instr, as_float=not int_math)
    x = x.astype(np.int64) if int_math else x
    tiles = [data]
    for op, operand, rev, slot in ((op0, operand0, reverse0, "0"), (op1, operand1, reverse1, "1")):
        if op is None:
            if operand is not None and slot == "1":
                rules.fail("operand-type", f"{instr}: operand1 given without op1")
            continue
        _check_alu_op(instr, op, int_math)
        if op.arity == 1:
            if operand not in (None, 0):
                rules.fail("operand-type", f"{instr}: unary op{slot} nl.{op.name} takes operand{slot}=None or 0")
            x = _apply(op, x, None, False)
            continue
        if operand is None:
            rules.fail("operand-type", f"{instr}: op{slot}=nl.{op.name} needs operand{slot}")
        val = column_or_scalar(instr, f"operand{slot}", operand, p, require_fp32=not int_math)
        if isinstance(operand, NkiTensor):
            tiles.append(operand)
            val = val.astype(np.int64) if int_math else val
        elif not int_math:
            val = np.float32(val)
        x = _apply(op, x, val, rev)
        x = x if int_math else x.astype(np.float32)
    default = "Vector"
    eng = resolve_engine(instr, engine, default, ("Vector", "Scalar", "GpSimd"))
    if eng == "Scalar":
        combo = (op0.name, getattr(op1, "name", None))
        if combo not in _SCALAR_ENGINE_TS_COMBOS:
            rules.fail("engine", f"{instr}: ScalarE on trn2 supports only multiply+add, multiply "
                       f"or add; got {combo}")
    if eng == "GpSimd":
        rules.check_no_psum(instr, "GpSimd", dst=dst, data=data)
        if op0 is not nlops.rsqrt:
            rules.fail("engine", f"{instr}: engine=gpsimd is only allowed for nl.rsqrt")
    dst._write(x, instr)
    perf = 4 if (eng == "Vector" and in_sbuf(dst, data) and half_precision(dst, data)
                 and _contiguous_inner(dst, data)) else 1
    record(eng, "tensor_scalar", dst, tiles, perf_factor=perf)


def scalar_tensor_tensor(dst: NkiTensor, data: NkiTensor, op0: Any, operand0: Any, op1: Any,
                         operand1: NkiTensor, reverse0: bool = False, reverse1: bool = False,
                         name: Optional[str] = None) -> None:
    """dst = (data op0 operand0) op1 operand1, with operand1 a full tile."""
    instr = "scalar_tensor_tensor"
    for n, t in (("dst", dst), ("data", data), ("operand1", operand1)):
        require_tile(instr, n, t)
    check_compute(instr, dst=dst, data=data, operand1=operand1)
    for op in (op0, op1):
        rules.check_op(instr, op, alu=True, arity=2)
        if op.bitvec:
            rules.fail("operator", f"{instr}: bitvec operator nl.{op.name} is not supported here")
    check_same_layout(instr, dst, data=data, operand1=operand1)
    rules.check_one_psum_input(instr, data=data, operand1=operand1)
    p = data.partitions
    s = column_or_scalar(instr, "operand0", operand0, p)
    s = np.float32(s) if isinstance(s, float) else s
    tmp = _apply(op0, read2d(data, instr), s, reverse0).astype(np.float32)
    out = _apply(op1, tmp, read2d(operand1, instr), reverse1)
    dst._write(out, instr)
    reads = [data, operand1] + ([operand0] if isinstance(operand0, NkiTensor) else [])
    record("Vector", "scalar_tensor_tensor", dst, reads, n_inputs=2)


def reciprocal(dst: NkiTensor, data: NkiTensor, name: Optional[str] = None) -> None:
    """dst = 1 / data on VectorE (precise; ScalarE's activation(reciprocal) approximates)."""
    instr = "reciprocal"
    require_tile(instr, "dst", dst)
    require_tile(instr, "data", data)
    check_compute(instr, dst=dst, data=data)
    check_same_layout(instr, dst, data=data)
    dst._write(compute(lambda a: np.float32(1.0) / a, read2d(data, instr)), instr)
    record("Vector", "reciprocal", dst, [data])


def tensor_copy(dst: NkiTensor, src: NkiTensor, engine: Any = engine.unknown,
                name: Optional[str] = None) -> None:
    """Copy on-chip; bit-exact for equal dtypes, else through fp32."""
    instr = "tensor_copy"
    require_tile(instr, "dst", dst)
    require_tile(instr, "src", src)
    check_compute(instr, dst=dst, src=src)
    check_same_layout(instr, dst, src=src)
    eng = resolve_engine(instr, engine, "Vector", ("Vector", "Scalar", "GpSimd"))
    if eng == "GpSimd":
        rules.check_no_psum(instr, "GpSimd", dst=dst, src=src)
    same = dst.dtype == src.dtype
    values = read2d(src, instr, as_float=not same)
    dst._write(values.copy() if same else values, instr)
    perf = 4 if (eng == "Vector" and in_sbuf(dst, src) and half_precision(dst, src)
                 and _contiguous_inner(dst, src)) else 1
    record(eng, "tensor_copy", dst, [src], perf_factor=perf)


def memset(dst: NkiTensor, value: Any, engine: Any = engine.unknown, name: Optional[str] = None) -> None:
    """Fill dst with a constant; the value must match the dtype kind (int for int tiles)."""
    instr = "memset"
    require_tile(instr, "dst", dst)
    check_compute(instr, dst=dst)
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    rules.check_number(instr, "value", value)
    if dt.is_int(dst.dtype) and not isinstance(value, int):
        # NKI 0.3 docs: the value must match the dtype (an int literal for int tiles). 0.0 is
        # all-zero bits in every dtype, so it fills an int tile unambiguously; nki-library's own
        # cross_partition_copy (moe_block_tkg) memsets a uint32 tile with 0.0. That one value is
        # taken (with a warning); any other float is refused.
        if float(value) != 0.0:
            rules.fail("dtype", f"{instr}: value {value!r} must be an int for a "
                       f"{dt.short_name(dst.dtype)} tile (NKI >= 0.3)")
        context.current().warn(f"{instr}: value 0.0 for a {dt.short_name(dst.dtype)} tile; the NKI 0.3 "
                               "docs ask for an int literal (0.0 is all-zero bits: taken as 0)")
        value = 0
    eng = resolve_engine(instr, engine, "Vector", ("Vector", "GpSimd"))
    if eng == "GpSimd":
        rules.check_no_psum(instr, "GpSimd", dst=dst)
    fill = np.full((dst.partitions, dst.free_size), value,
                   dtype=np.int64 if isinstance(value, int) else np.float32)
    dst._write(fill, instr)
    record(eng, "memset", dst, [])


def tensor_copy_predicated(dst: NkiTensor, src: Any, predicate: NkiTensor, reverse_pred: bool = False,
                           name: Optional[str] = None) -> None:
    """Copy src into dst where predicate is non-zero (zero with reverse_pred); else keep dst."""
    instr = "tensor_copy_predicated"
    require_tile(instr, "dst", dst)
    require_tile(instr, "predicate", predicate)
    src_t = src if isinstance(src, NkiTensor) else None
    check_compute(instr, dst=dst, src=src_t, predicate=predicate)
    check_same_layout(instr, dst, src=src_t, predicate=predicate)
    rules.check_one_psum_input(instr, src=src_t, predicate=predicate)
    if predicate.dtype not in (dt.uint8, dt.uint16, dt.uint32):
        rules.fail("dtype", f"{instr}: predicate dtype {dt.short_name(predicate.dtype)} must be "
                   "uint8, uint16 or uint32")
    if src_t is not None:
        rules.check_dtype_equal(instr, "src", dt.short_name(src_t.dtype), "dst", dt.short_name(dst.dtype))
        values = read2d(src_t, instr, as_float=False)
    else:
        rules.check_number(instr, "src", src)
        values = dt.round_to(np.full((dst.partitions, dst.free_size), src, dtype=np.float32), dst.dtype)
    mask = read2d(predicate, instr, as_float=False) != 0
    mask = ~mask if reverse_pred else mask
    old = read2d(dst, instr, as_float=False)
    dst._write(np.where(mask, values, old).astype(dst.dtype), instr)
    record("Vector", "tensor_copy_predicated", dst, [t for t in (src_t, predicate, dst) if t is not None],
           n_inputs=2)


def nc_stream_shuffle(dst: NkiTensor, src: NkiTensor, shuffle_mask: Any, name: Optional[str] = None) -> None:
    """Within each 32-partition quadrant, dst lane i copies src lane mask[i] (255: keep)."""
    instr = "nc_stream_shuffle"
    require_tile(instr, "dst", dst)
    require_tile(instr, "src", src)
    check_compute(instr, dst=dst, src=src)
    mask = [int(m) for m in shuffle_mask]
    if len(mask) != rules.QUADRANT:
        rules.fail("shuffle-mask", f"{instr}: shuffle_mask has {len(mask)} entries; needs {rules.QUADRANT}")
    if any(not (0 <= m < rules.QUADRANT or m == 255) for m in mask):
        rules.fail("shuffle-mask", f"{instr}: mask entries must be in 0..31 or 255")
    rules.check_dtype_equal(instr, "dst", dt.short_name(dst.dtype), "src", dt.short_name(src.dtype))
    rules.check_same_free(instr, "dst", dst.free_size, src=src.free_size)
    s = read2d(src, instr, as_float=False).copy()
    out = read2d(dst, instr, as_float=False).copy()
    n_quads = -(-max(src.partitions, dst.partitions) // rules.QUADRANT)
    for q in range(n_quads):
        for i, m in enumerate(mask):
            d_lane, s_lane = q * rules.QUADRANT + i, q * rules.QUADRANT + m
            if m == 255 or d_lane >= dst.partitions:
                continue
            if s_lane >= src.partitions:
                rules.fail("shuffle-mask", f"{instr}: dst partition {d_lane} reads src partition "
                           f"{s_lane} but src has {src.partitions} partitions")
            out[d_lane] = s[s_lane]
    dst._write(out, instr)
    record("Vector", "nc_stream_shuffle", dst, [src])
