"""Shared plumbing of the ISA instructions: operand checks, fp32 reads, recording.

Compute engines see every operand as [partitions, elements per partition]; NKI lets the
free dims be split differently between inputs and output as long as the counts agree.
"""
from __future__ import annotations

from enum import Enum
from typing import Any, Iterable, Optional, Union

import numpy as np

from . import context
from . import dtypes as dt
from . import rules
from .tensor import NkiTensor


class engine(Enum):  # noqa: N801 - NKI spelling
    """`nisa.engine` values (numbers as in the NKI stub)."""

    unknown = 0
    tensor = 1
    scalar = 2
    gpsimd = 3
    dma = 4
    vector = 5
    sync = 6


ENGINE_NAMES = {engine.tensor: "Tensor", engine.vector: "Vector", engine.scalar: "Scalar",
                engine.gpsimd: "GpSimd", engine.dma: "DMA"}

def require_tile(instr: str, name: str, x: Any) -> NkiTensor:
    if not isinstance(x, NkiTensor):
        rules.fail("operand-type", f"{instr}: {name} must be an NKI tensor, got {type(x).__name__}")
    if x._view.size == 0:
        rules.fail("index", f"{instr}: {name} is an empty view {x.shape}")
    return x


def check_compute(instr: str, **tensors: Optional[NkiTensor]) -> None:
    """Common compute-engine rules: no HBM, partitions <= 128, legal start partition."""
    rules.check_not_hbm(instr, **tensors)
    for name, t in tensors.items():
        if t is None:
            continue
        rules.check_partition_dim(t.partitions, f"{instr}: {name}")
        rules.check_start_partition(t.start_partition(), t.partitions, f"{instr}: {name}")


def read2d(t: NkiTensor, where: str, as_float: bool = True) -> np.ndarray:
    """Operand as a [P, F] array (fp32 unless as_float is False)."""
    view = t._read(where)
    arr = np.asarray(view).reshape(t.partitions, -1)
    return arr.astype(np.float32) if as_float else arr


def column_or_scalar(instr: str, name: str, value: Any, parts: int,
                     require_fp32: bool = False) -> Union[float, np.ndarray]:
    """A Python number, or a [P, 1] tile read as an fp32 column."""
    if isinstance(value, NkiTensor):
        check_compute(instr, **{name: value})
        rules.check_column(instr, name, value.shape, parts)
        if require_fp32 and value.dtype != dt.float32:
            rules.fail("dtype", f"{instr}: {name} tile must be float32, got {dt.short_name(value.dtype)}")
        return read2d(value, instr).reshape(parts, 1)
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    rules.check_number(instr, name, value)
    return float(value)


def check_same_layout(instr: str, dst: NkiTensor, **srcs: Optional[NkiTensor]) -> None:
    """Equal partition counts and equal elements per partition."""
    parts = {n: t.partitions for n, t in srcs.items() if t is not None}
    frees = {n: t.free_size for n, t in srcs.items() if t is not None}
    rules.check_same_partitions(instr, "dst", dst.partitions, **parts)
    rules.check_same_free(instr, "dst", dst.free_size, **frees)


def resolve_engine(instr: str, requested: Any, default: str, allowed: Iterable[str]) -> str:
    """Engine name for the record; `engine.unknown`/None picks `default`."""
    if requested is None or requested == engine.unknown:
        return default
    if not isinstance(requested, engine):
        rules.fail("engine", f"{instr}: engine must be a nisa.engine value, got {requested!r}")
    name = ENGINE_NAMES.get(requested, requested.name)
    allowed = tuple(allowed)
    if name not in allowed:
        rules.fail("engine", f"{instr}: engine {requested.name} not allowed; use one of {allowed}")
    return name


def all_int(*tensors: Optional[NkiTensor]) -> bool:
    return all(t is None or dt.is_int(t.dtype) for t in tensors)


def half_precision(*tensors: Optional[NkiTensor]) -> bool:
    return all(t is None or t.dtype in (dt.bfloat16, dt.float16) for t in tensors)


def in_sbuf(*tensors: Optional[NkiTensor]) -> bool:
    return all(t is None or t.buffer.value == "sbuf" for t in tensors)


def record(engine_name: str, op: str, dst: Optional[NkiTensor], reads: Iterable[Any],
           free_elems: Optional[int] = None, n_inputs: int = 1, **extra: Any) -> None:
    """Append one instruction to the current program's recorder."""
    tiles = [r for r in reads if isinstance(r, NkiTensor)]
    ref = dst if dst is not None else tiles[0]
    parts = ref.partitions if ref.buffer.on_chip else 1
    free = ref.free_size if free_elems is None else free_elems
    nbytes = extra.pop("nbytes", None)
    if nbytes is None:
        nbytes = dst.size * dst.dtype.itemsize if dst is not None else 0
    ctx = context.current()
    cross = ctx.launch.cross
    if cross is not None and cross.aborted:  # a sibling program failed: stop this one too
        cross.check_abort()
    ctx.recorder.add(
        engine=engine_name, op=op, partitions=parts, free_elems=int(free), bytes=int(nbytes),
        n_inputs=n_inputs, reads=tuple(t.span() for t in tiles),
        writes=(dst.span(),) if dst is not None else (), **extra)


def compute(fn: Any, *args: Any) -> np.ndarray:
    """Run numpy math with floating-point warnings silenced (hardware does not trap)."""
    with np.errstate(all="ignore"):
        return np.asarray(fn(*args))


def warn_act_range(instr: str, op: Any, x: np.ndarray) -> None:
    from .operators import out_of_act_range
    n = out_of_act_range(op, x)
    if n:
        context.current().warn(f"{instr}: {n} input(s) of nl.{op.name} outside its documented "
                               f"ScalarE range {op.act_range}; hardware output would be garbage")
