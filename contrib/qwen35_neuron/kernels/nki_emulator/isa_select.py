"""VectorE selection and search: `range_select`, `select_reduce`, `max8`, `nc_find_index8`,
`nc_match_replace8` (NKI docs, nki.isa.*; NeuronCore-v3).

`range_select` and `select_reduce` fold a max-reduction into VectorE's per-lane accumulator
registers, the same registers `tensor_scalar_reduce` uses (`reduce_cmd` as there: reset_reduce
starts from -inf, reduce continues, idle leaves them alone). The search instructions read up to
16,384 elements per partition and work on the values converted to fp32.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import context
from . import dtypes as dt
from . import operators as nlops
from . import rules
from .isa_scalar import reduce_cmd
from .operands import check_compute, check_same_layout, column_or_scalar, compute, read2d, record, require_tile
from .tensor import NkiTensor

FP32_MIN = float(np.finfo(np.float32).min)  # range_select's only allowed on_false_value
_COMPARISONS = ("equal", "less", "less_equal", "greater", "greater_equal")
SEARCH_MIN, SEARCH_MAX = 8, 16384  # elements per partition max8 / nc_find_index8 read


def _vector_max_reduce(instr: str, values: np.ndarray, parts_start: int, cmd: Any,
                       reduce_res: Optional[NkiTensor]) -> None:
    """Max-reduce rows of `values` into the VectorE lane registers per `cmd`; read them out."""
    regs = context.current().vec_regs
    lanes = slice(parts_start, parts_start + values.shape[0])
    cmd_t = type(cmd)
    if cmd == cmd_t.load_reduce:
        rules.fail("not-emulated", f"{instr}: reduce_cmd.load_reduce is not emulated here")
    if cmd in (cmd_t.reset, cmd_t.reset_reduce):
        regs[lanes] = -np.inf
    if cmd in (cmd_t.reduce, cmd_t.reset_reduce):
        regs[lanes] = np.maximum(regs[lanes], values.max(axis=1))
    if reduce_res is not None:
        if not dt.is_float(reduce_res.dtype):
            rules.fail("dtype", f"{instr}: reduce_res must be a float tile, got {dt.short_name(reduce_res.dtype)}")
        rules.check_column(instr, "reduce_res", reduce_res.shape, values.shape[0])
        reduce_res._write(regs[lanes].reshape(-1, 1).copy(), instr)


def _max_op(instr: str, op: Any) -> None:
    op = nlops.REDUCE_ALIASES.get(getattr(op, "name", ""), op)
    if op is not nlops.maximum:
        rules.fail("operator", f"{instr}: reduce_op must be nl.maximum, got {op!r}")


def range_select(dst: NkiTensor, on_true_tile: NkiTensor, comp_op0: Any, comp_op1: Any,
                 bound0: NkiTensor, bound1: NkiTensor, reduce_cmd: Any = reduce_cmd.reset_reduce,
                 reduce_res: Optional[NkiTensor] = None, reduce_op: Any = nlops.maximum,
                 range_start: int = 0, on_false_value: float = FP32_MIN, name: Optional[str] = None) -> None:
    """dst = on_true where comp_op0(range_start + i, bound0) and comp_op1(range_start + i, bound1)
    (i = free index, compared in fp32), else FP32_MIN; max of dst into the lane registers."""
    instr = "range_select"
    for n, t in (("dst", dst), ("on_true_tile", on_true_tile), ("bound0", bound0), ("bound1", bound1)):
        require_tile(instr, n, t)
    check_compute(instr, dst=dst, on_true_tile=on_true_tile, reduce_res=reduce_res)
    check_same_layout(instr, dst, on_true_tile=on_true_tile)
    for nm, op in (("comp_op0", comp_op0), ("comp_op1", comp_op1)):
        if getattr(op, "name", None) not in _COMPARISONS:
            rules.fail("operator", f"{instr}: {nm} must be one of nl.{', nl.'.join(_COMPARISONS)}, got {op!r}")
    _max_op(instr, reduce_op)
    if not dt.is_float(on_true_tile.dtype):
        rules.fail("dtype", f"{instr}: on_true_tile must be a float tile, got {dt.short_name(on_true_tile.dtype)}")
    if np.float32(on_false_value) != np.float32(FP32_MIN):
        rules.fail("operand-type", f"{instr}: on_false_value must be FP32_MIN ({FP32_MIN:.8g}), "
                   f"got {on_false_value!r}")
    p = on_true_tile.partitions
    b0 = column_or_scalar(instr, "bound0", bound0, p, require_fp32=True)
    b1 = column_or_scalar(instr, "bound1", bound1, p, require_fp32=True)
    x = read2d(on_true_tile, instr)
    idx = np.float32(int(range_start)) + np.arange(x.shape[1], dtype=np.float32)[None, :]
    keep = (np.asarray(comp_op0.fn(idx, b0)) != 0) & (np.asarray(comp_op1.fn(idx, b1)) != 0)
    out = np.where(keep, x, np.float32(FP32_MIN)).astype(np.float32)
    dst._write(out, instr)
    _vector_max_reduce(instr, out, on_true_tile.start_partition(), reduce_cmd, reduce_res)
    record("Vector", "range_select", dst, [on_true_tile, bound0, bound1])


def select_reduce(dst: NkiTensor, predicate: NkiTensor, on_true: NkiTensor, on_false: Any,
                  reduce_res: Optional[NkiTensor] = None, reduce_cmd: Any = reduce_cmd.idle,
                  reduce_op: Any = nlops.maximum, reverse_pred: bool = False, name: Optional[str] = None) -> None:
    """dst = where(predicate (inverted by reverse_pred), on_true, on_false), max into the registers."""
    instr = "select_reduce"
    for n, t in (("dst", dst), ("predicate", predicate), ("on_true", on_true)):
        require_tile(instr, n, t)
    check_compute(instr, dst=dst, predicate=predicate, on_true=on_true, reduce_res=reduce_res)
    check_same_layout(instr, dst, predicate=predicate, on_true=on_true)
    rules.check_one_psum_input(instr, predicate=predicate, on_true=on_true)
    _max_op(instr, reduce_op)
    if predicate.dtype not in (dt.int8, dt.uint8, dt.int16, dt.uint16):
        rules.fail("dtype", f"{instr}: predicate must be int8/uint8/int16/uint16, got {dt.short_name(predicate.dtype)}")
    if on_true.dtype in (dt.int32, dt.uint32):
        rules.fail("dtype", f"{instr}: on_true dtype {dt.short_name(on_true.dtype)} is not supported")
    p = on_true.partitions
    false_vals = column_or_scalar(instr, "on_false", on_false, p, require_fp32=True)
    mask = read2d(predicate, instr, as_float=False) != 0
    mask = ~mask if reverse_pred else mask
    out = np.where(mask, read2d(on_true, instr), np.float32(false_vals) if np.isscalar(false_vals)
                   else false_vals).astype(np.float32)
    dst._write(out, instr)
    _vector_max_reduce(instr, out, on_true.start_partition(), reduce_cmd, reduce_res)
    reads = [predicate, on_true] + ([on_false] if isinstance(on_false, NkiTensor) else [])
    record("Vector", "select_reduce", dst, reads, n_inputs=2)


def _search_input(instr: str, data: NkiTensor) -> np.ndarray:
    require_tile(instr, "data", data)
    check_compute(instr, data=data)
    if not SEARCH_MIN <= data.free_size <= SEARCH_MAX:
        rules.fail("search-size", f"{instr}: data has {data.free_size} elements per partition; "
                   f"{SEARCH_MIN} to {SEARCH_MAX} allowed")
    return read2d(data, instr)


def _eight_wide(instr: str, name: str, t: NkiTensor, parts: int) -> None:
    require_tile(instr, name, t)
    check_compute(instr, **{name: t})
    if t.partitions != parts or t.free_size != 8:
        rules.fail("operand-shape", f"{instr}: {name} has shape {t.shape}; expected ({parts}, 8)")


def max8(dst: NkiTensor, src: NkiTensor, name: Optional[str] = None) -> None:
    """dst[p, :8] = the 8 largest values of partition p, descending (fp32 internally)."""
    instr = "max8"
    x = _search_input(instr, src)
    _eight_wide(instr, "dst", dst, src.partitions)
    top = -np.sort(-x, axis=1, kind="stable")[:, :8]
    dst._write(top, instr)
    record("Vector", "max8", dst, [src], free_elems=src.free_size)


def _index_dtype(instr: str, t: NkiTensor) -> int:
    if t.dtype not in (dt.uint16, dt.uint32):
        rules.fail("dtype", f"{instr}: index output must be uint16 or uint32, got {dt.short_name(t.dtype)}")
    return int(np.iinfo(t.dtype).max)  # the all-ones "not found" sentinel


def nc_find_index8(dst: NkiTensor, data: NkiTensor, vals: NkiTensor, name: Optional[str] = None) -> None:
    """dst[p, j] = index of the first occurrence of vals[p, j] in data[p] (all ones if absent).

    Duplicate values among vals pair with successive occurrences in ascending order (the
    documented opposite of nc_match_replace8)."""
    instr = "nc_find_index8"
    x = _search_input(instr, data)
    _eight_wide(instr, "vals", vals, data.partitions)
    _eight_wide(instr, "dst", dst, data.partitions)
    missing = _index_dtype(instr, dst)
    v = read2d(vals, instr)
    out = np.full(v.shape, missing, dtype=np.int64)
    for p in range(x.shape[0]):
        used: set = set()
        for j in range(8):
            hits = np.flatnonzero(x[p] == v[p, j])
            free = [h for h in hits if h not in used]
            if free:
                out[p, j] = free[0]
                used.add(free[0])
    dst._write(out, instr)
    record("Vector", "nc_find_index8", dst, [data, vals], free_elems=data.free_size)


def nc_match_replace8(dst: NkiTensor, data: NkiTensor, vals: NkiTensor, imm: float,
                      dst_idx: Optional[NkiTensor] = None, name: Optional[str] = None) -> None:
    """dst = data with the first occurrence of each vals[p, j] replaced by imm; dst_idx gets the
    positions. vals are processed j = 7 .. 0, so duplicates take successive occurrences with the
    first occurrence in the highest slot (NKI docs)."""
    instr = "nc_match_replace8"
    x = _search_input(instr, data)
    require_tile(instr, "dst", dst)
    check_compute(instr, dst=dst, dst_idx=dst_idx)
    check_same_layout(instr, dst, data=data)
    _eight_wide(instr, "vals", vals, data.partitions)
    rules.check_number(instr, "imm", float(imm) if isinstance(imm, (int, float)) else imm)
    v = read2d(vals, instr)
    out = x.copy()
    idx = np.zeros(v.shape, dtype=np.int64)
    for p in range(x.shape[0]):
        used: set = set()
        for j in range(7, -1, -1):
            hits = [h for h in np.flatnonzero(x[p] == v[p, j]) if h not in used]
            if hits:
                idx[p, j] = hits[0]
                used.add(hits[0])
                out[p, hits[0]] = np.float32(imm)
            else:
                idx[p, j] = _index_dtype(instr, dst_idx) if dst_idx is not None else 0
    dst._write(out, instr)
    if dst_idx is not None:
        _eight_wide(instr, "dst_idx", dst_idx, data.partitions)
        dst_idx._write(idx, instr)
    record("Vector", "nc_match_replace8", dst, [data, vals], free_elems=data.free_size)
