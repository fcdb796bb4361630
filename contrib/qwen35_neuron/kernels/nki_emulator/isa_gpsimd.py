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


GPSIMD_CORE_PARTITIONS = 16  # each of the 8 GpSimd cores is wired to 16 contiguous partitions


def nonzero_with_count(dst: NkiTensor, src: NkiTensor, index_offset: int = 0, padding_val: int = -1,
                       name: Optional[str] = None) -> None:
    """Per GpSimd core (partitions 0, 16, ..., 112 only): the indices (+ index_offset) of the
    nonzero elements of that partition, then padding_val, then their count; other partitions
    of dst are left as they are (NKI docs)."""
    instr = "nonzero_with_count"
    require_tile(instr, "dst", dst)
    require_tile(instr, "src", src)
    check_compute(instr, dst=dst, src=src)
    rules.check_buffer(dst, ["sbuf"], instr, "dst")
    rules.check_buffer(src, ["sbuf"], instr, "src")
    rules.check_same_partitions(instr, "src", src.partitions, dst=dst.partitions)
    if src.dtype not in (dt.float32, dt.int32) or dst.dtype != dt.int32:
        rules.fail("dtype", f"{instr}: src must be float32 or int32 and dst int32; got "
                   f"{dt.short_name(src.dtype)} -> {dt.short_name(dst.dtype)}")
    if dst.free_size != src.free_size + 1:
        rules.fail("shape-mismatch", f"{instr}: dst has {dst.free_size} elements per partition; "
                   f"needs src's {src.free_size} + 1 (the count)")
    x = read2d(src, instr, as_float=False)
    out = read2d(dst, instr, as_float=False).astype(np.int64)
    for p in range(0, src.partitions, GPSIMD_CORE_PARTITIONS):
        hits = np.flatnonzero(x[p] != 0)
        row = np.full(src.free_size + 1, int(padding_val), dtype=np.int64)
        row[:hits.size] = hits + int(index_offset)
        row[-1] = hits.size
        out[p] = row
    dst._write(out, instr)
    record("GpSimd", "nonzero_with_count", dst, [src], free_elems=src.free_size)


def local_gather(dst: NkiTensor, src_buffer: NkiTensor, index: NkiTensor, num_elem_per_idx: int = 1,
                 num_valid_indices: Optional[int] = None, name: Optional[str] = None) -> None:
    """Each GpSimd core serves 16 partitions: it flattens its 16-partition slice of the uint16
    `index` partition-first, keeps the first num_valid_indices, and every one of its partitions
    gathers, for each index i, the num_elem_per_idx elements starting at free element i of that
    partition; dst holds them in order (the NumPy semantics of the NKI docs' local_gather example)."""
    instr = "local_gather"
    for n, t in (("dst", dst), ("src_buffer", src_buffer), ("index", index)):
        require_tile(instr, n, t)
    check_compute(instr, dst=dst, src_buffer=src_buffer, index=index)
    for n, t in (("dst", dst), ("src_buffer", src_buffer), ("index", index)):
        rules.check_buffer(t, ["sbuf"], instr, n)
    parts = src_buffer.partitions
    if index.partitions != parts or parts % GPSIMD_CORE_PARTITIONS:
        rules.fail("partition-mismatch", f"{instr}: src_buffer and index need the same partition count, "
                   f"a multiple of 16; got {parts} and {index.partitions}")
    rules.check_same_partitions(instr, "src_buffer", parts, dst=dst.partitions)
    if index.dtype != dt.uint16:
        rules.fail("dtype", f"{instr}: index must be uint16, got {dt.short_name(index.dtype)}")
    rules.check_dtype_equal(instr, "dst", dt.short_name(dst.dtype), "src_buffer", dt.short_name(src_buffer.dtype))
    k = int(num_elem_per_idx)
    if k not in (1, 2, 4, 8, 16, 32):
        rules.fail("operand-type", f"{instr}: num_elem_per_idx {k} not in (1, 2, 4, 8, 16, 32)")
    src = read2d(src_buffer, instr, as_float=False)
    idx = read2d(index, instr, as_float=False).astype(np.int64)
    per_core = idx.size // (parts // GPSIMD_CORE_PARTITIONS)
    valid = per_core if num_valid_indices is None else int(num_valid_indices)
    if not 0 < valid <= min(per_core, 4096):
        rules.fail("operand-type", f"{instr}: num_valid_indices {valid} must be in 1..{min(per_core, 4096)}")
    rules.check_same_free(instr, "the gathered data", valid * k, dst=dst.free_size)
    out = np.empty((parts, valid * k), dtype=src.dtype)
    cols = np.arange(k, dtype=np.int64)
    for c in range(parts // GPSIMD_CORE_PARTITIONS):
        rows = slice(c * GPSIMD_CORE_PARTITIONS, (c + 1) * GPSIMD_CORE_PARTITIONS)
        starts = idx[rows].reshape(-1, order="F")[:valid]
        where = (starts[:, None] + cols[None, :]).reshape(-1)
        if where.max() >= src.shape[1]:
            rules.fail("index", f"{instr}: index {int(starts.max())} + {k} reads past the "
                       f"{src.shape[1]} elements per partition")
        out[rows] = src[rows][:, where]
    dst._write(out, instr)
    record("GpSimd", "local_gather", dst, [src_buffer, index], free_elems=valid * k)


def nc_n_gather(dst: NkiTensor, data: NkiTensor, indices: NkiTensor, name: Optional[str] = None) -> None:
    """dst[p, j] = data[p].flatten()[indices[p, j]] within each partition (uint32 indices)."""
    instr = "nc_n_gather"
    for n, t in (("dst", dst), ("data", data), ("indices", indices)):
        require_tile(instr, n, t)
        rules.check_buffer(t, ["sbuf"], instr, n)
    check_compute(instr, dst=dst, data=data, indices=indices)
    rules.check_same_partitions(instr, "data", data.partitions, dst=dst.partitions, indices=indices.partitions)
    rules.check_same_free(instr, "indices", indices.free_size, dst=dst.free_size)
    rules.check_dtype_equal(instr, "dst", dt.short_name(dst.dtype), "data", dt.short_name(data.dtype))
    if indices.dtype != dt.uint32:
        rules.fail("dtype", f"{instr}: indices must be uint32, got {dt.short_name(indices.dtype)}")
    x = read2d(data, instr, as_float=False)
    idx = read2d(indices, instr, as_float=False).astype(np.int64)
    if idx.size and idx.max() >= x.shape[1]:
        rules.fail("index", f"{instr}: index {int(idx.max())} >= {x.shape[1]} elements per partition")
    dst._write(np.take_along_axis(x, idx, axis=1), instr)
    record("GpSimd", "nc_n_gather", dst, [data, indices], free_elems=indices.free_size)
