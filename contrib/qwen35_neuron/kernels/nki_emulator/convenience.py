"""`nl` convenience ops that return new tiles: nl.load/store/copy/matmul/transpose,
`nl.<op>(x[, y])` and nl.sum/max/min.

NKI lowers these to ISA instructions; here each computes directly and records the
instruction it would lower to (ScalarE for activation functions, VectorE otherwise, DMA
for load/store, TensorE for matmul/transpose). Results are new SBUF tiles (matmul and
transpose: PSUM, as TensorE writes PSUM).
"""
from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np

from . import context
from . import dtypes as dt
from . import rules
from .isa_dma import dma_copy
from .isa_tensor import nc_matmul, nc_transpose
from .isa_vector import tensor_copy
from .memory import MemoryRegion
from .operands import check_compute, compute, record
from .tensor import NkiTensor, new_tensor


def _new_tile(shape: Sequence[int], dtype: Any, region: MemoryRegion = MemoryRegion.sbuf) -> NkiTensor:
    return new_tensor(context.current().memory.allocate(shape, dtype, region))


def _operand(instr: str, x: Any, name: str) -> Union[NkiTensor, float]:
    if isinstance(x, NkiTensor):
        check_compute(instr, **{name: x})
        return x
    if isinstance(x, (np.floating, np.integer)):
        x = x.item()
    rules.check_number(instr, name, x)
    return x


def apply_op(op: Any, args: Sequence[Any], dtype: Any = None, **kwargs: Any) -> NkiTensor:
    """`nl.exp(x)`, `nl.add(x, y)`, ...: element-wise with [P, 1] / scalar broadcasting."""
    instr = f"nl.{op.name}"
    if len(args) != op.arity:
        rules.fail("operand-type", f"{instr} takes {op.arity} argument(s), got {len(args)}")
    vals = [_operand(instr, a, f"arg{i}") for i, a in enumerate(args)]
    tiles = [v for v in vals if isinstance(v, NkiTensor)]
    if not tiles:
        rules.fail("operand-type", f"{instr}: at least one argument must be a tile")
    ref = max(tiles, key=lambda t: t.size)
    for t in tiles:
        rules.check_same_partitions(instr, "first tile", ref.partitions, tile=t.partitions)
        if t.free_size not in (1, ref.free_size):
            rules.fail("shape-mismatch", f"{instr}: tiles {t.shape} and {ref.shape} differ; the "
                       "smaller must be [P, 1] or have the same elements per partition")
    out_dtype = dt.as_dtype(dtype) if dtype is not None else ref.dtype
    if op.name == "copy":
        out = _new_tile(ref.shape, out_dtype)
        tensor_copy(out, ref)
        return out
    arrays = [np.asarray(v._read(instr), dtype=np.float32) if isinstance(v, NkiTensor) else np.float32(v)
              for v in vals]
    if len(arrays) == 2 and isinstance(vals[0], NkiTensor) and isinstance(vals[1], NkiTensor) \
            and vals[0].shape != vals[1].shape:
        arrays = [a.reshape(a.shape[0], -1) for a in arrays]  # [P, F] with [P, 1]
    result = compute(op.fn, *arrays)
    out = _new_tile(ref.shape, out_dtype)
    out._write(np.broadcast_to(result, np.broadcast_shapes(*[np.shape(a) for a in arrays])).reshape(ref.shape),
               instr)
    engine = "Scalar" if (op.arity == 1 and op.act) else "Vector"
    record(engine, instr, out, tiles, n_inputs=len(tiles))
    return out


class Reduction:
    """`nl.sum/max/min(x, axis, dtype=None, keepdims=False)`; also a reduce-op alias."""

    def __init__(self, name: str, fn: Any) -> None:
        self.name, self._fn = name, fn

    def __call__(self, x: NkiTensor, axis: Any, dtype: Any = None, keepdims: bool = False) -> NkiTensor:
        instr = f"nl.{self.name}"
        _operand(instr, x, "x")
        axes = tuple(sorted(int(a) % x.ndim for a in ((axis,) if np.isscalar(axis) else axis)))
        rules.check_reduce_axes(instr, axes, x.ndim)
        vals = compute(lambda: self._fn(np.asarray(x._read(instr), dtype=np.float32), axis=axes,
                                        keepdims=True))
        shape = vals.shape if keepdims else tuple(s for i, s in enumerate(vals.shape) if i not in axes)
        shape = shape if len(shape) >= 2 else (x.partitions, 1)
        out = _new_tile(shape, dt.as_dtype(dtype) if dtype is not None else x.dtype)
        out._write(vals, instr)
        record("Vector", instr, out, [x], free_elems=x.free_size)
        return out

    def __repr__(self) -> str:
        return f"nl.{self.name}"


reduce_sum = Reduction("sum", np.sum)
reduce_max = Reduction("max", np.max)
reduce_min = Reduction("min", np.min)


def load(src: NkiTensor, dtype: Any = None) -> NkiTensor:
    """HBM -> new SBUF tile (one DMA)."""
    out = _new_tile(src.shape if src.ndim >= 1 else (1,), dt.as_dtype(dtype) if dtype is not None else src.dtype)
    dma_copy(out, src)
    return out


def store(dst: NkiTensor, value: NkiTensor) -> None:
    """SBUF tile -> HBM (one DMA)."""
    dma_copy(dst, value)


def copy_tile(x: NkiTensor, dtype: Any = None) -> NkiTensor:
    out = _new_tile(x.shape, dt.as_dtype(dtype) if dtype is not None else x.dtype)
    tensor_copy(out, x)
    return out


def transpose(x: NkiTensor, dtype: Any = None) -> NkiTensor:
    """TensorE transpose of an SBUF tile into a new PSUM tile of x's dtype."""
    out = _new_tile((x.free_size, x.partitions), x.dtype, MemoryRegion.psum)
    nc_transpose(out, x)
    if dtype is not None and dt.as_dtype(dtype) != x.dtype:
        return copy_tile(out, dtype)
    return out


def matmul(x: NkiTensor, y: NkiTensor, transpose_x: bool = False) -> NkiTensor:
    """x @ y into a new fp32 PSUM tile; x is the stationary operand when transpose_x is True
    (x given as [K, M]); otherwise x [M, K] is first transposed on TensorE."""
    stationary = x
    if not transpose_x:
        xt = transpose(x)
        stationary = copy_tile(xt)
    out = _new_tile((stationary.free_size, y.free_size), dt.float32, MemoryRegion.psum)
    nc_matmul(out, stationary, y, accumulate=False)
    return out


def device_print(print_prefix: str, tensor: NkiTensor) -> None:
    print(print_prefix, np.array(tensor._view))
