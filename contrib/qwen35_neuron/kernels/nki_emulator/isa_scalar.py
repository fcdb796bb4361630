"""ScalarE (ACT) instructions: `activation` and `activation_reduce`.

`dst = op(data * scale + bias)` in fp32, rounded to dst's dtype. The optional free-axis sum
goes into 128 per-lane accumulator registers (one per physical partition) that persist
between instructions, as on hardware; `reduce_res` reads them out.
"""
from __future__ import annotations

from enum import Enum
from typing import Any, Optional

import numpy as np

from . import context
from . import operators as nlops
from . import rules
from .operands import (check_compute, check_same_layout, column_or_scalar, compute, read2d,
                       record, require_tile, warn_act_range)
from .tensor import NkiTensor

# Cycles the accumulator read-out adds (ActReadAccumulator, nki-facts section 6).
ACT_READOUT_CYCLES = 64


class reduce_cmd(Enum):  # noqa: N801 - NKI spelling
    idle = 0
    reset = 1
    reduce = 2
    reset_reduce = 3
    load_reduce = 4


def _reduce_op(instr: str, op: Any) -> Any:
    op = nlops.REDUCE_ALIASES.get(getattr(op, "name", ""), op) if op is not None else None
    if op is not None and op is not nlops.add:
        rules.fail("operator", f"{instr}: reduce_op must be nl.add on ScalarE, got {op!r}")
    return op


def activation(dst: NkiTensor, op: Any, data: NkiTensor, bias: Any = None, scale: Any = 1.0,
               reduce_op: Any = None, reduce_res: Optional[NkiTensor] = None,
               reduce_cmd: reduce_cmd = reduce_cmd.idle, name: Optional[str] = None) -> None:
    """dst = op(data * scale + bias), optional per-lane add-reduce along the free axis.

    reduce_cmd (NKI docs): idle does not modify the 128 lane registers, reset zeroes them,
    reduce adds this instruction's row sums, reset_reduce zeroes then adds; reduce_res, when
    given, receives the registers after the command.
    """
    instr = "activation"
    require_tile(instr, "dst", dst)
    require_tile(instr, "data", data)
    rules.check_op(instr, op, act=True, arity=1)
    check_compute(instr, dst=dst, data=data, reduce_res=reduce_res)
    check_same_layout(instr, dst, data=data)
    p = data.partitions
    sc = column_or_scalar(instr, "scale", scale, p, require_fp32=True)
    bi = 0.0 if bias is None else column_or_scalar(instr, "bias", bias, p)
    rop = _reduce_op(instr, reduce_op)
    cmd = reduce_cmd  # idle leaves the registers alone; reduce_res then reads them out as they are
    if cmd == type(cmd).load_reduce:
        rules.fail("not-emulated", f"{instr}: reduce_cmd.load_reduce is not emulated on ScalarE")
    if cmd in (type(cmd).reduce, type(cmd).reset_reduce) and rop is None:
        rules.fail("operator", f"{instr}: reduce_cmd={cmd.name} needs reduce_op=nl.add")
    x = compute(lambda a: a * np.float32(sc) if np.isscalar(sc) else a * sc, read2d(data, instr))
    x = compute(lambda a: a + (np.float32(bi) if np.isscalar(bi) else bi), x).astype(np.float32)
    warn_act_range(instr, op, x)
    y = compute(op.fn, x).astype(np.float32)
    dst._write(y, instr)
    _accumulate(instr, data, y, cmd, reduce_res)
    reads = [data] + [t for t in (bias, scale) if isinstance(t, NkiTensor)]
    record("Scalar", f"activation.{op.name}", dst, reads,
           extra_cycles=ACT_READOUT_CYCLES if reduce_res is not None else 0)


def _accumulate(instr: str, data: NkiTensor, y: np.ndarray, cmd: reduce_cmd,
                reduce_res: Optional[NkiTensor]) -> None:
    """Update the ScalarE per-lane registers and read them out into reduce_res."""
    ctx = context.current()
    lanes = slice(data.start_partition(), data.start_partition() + data.partitions)
    if cmd in (type(cmd).reset, type(cmd).reset_reduce):
        ctx.act_regs[lanes] = 0.0
    if cmd in (type(cmd).reduce, type(cmd).reset_reduce):
        ctx.act_regs[lanes] = compute(lambda: ctx.act_regs[lanes] + y.sum(axis=1, dtype=np.float32))
    if reduce_res is not None:
        rules.check_column(instr, "reduce_res", reduce_res.shape, data.partitions)
        reduce_res._write(ctx.act_regs[lanes].reshape(-1, 1).copy(), instr)


def activation_reduce(dst: NkiTensor, op: Any, data: NkiTensor, reduce_op: Any,
                      reduce_res: NkiTensor, bias: Any = None, scale: Any = 1.0,
                      name: Optional[str] = None) -> None:
    """`activation` with reduce_cmd=reset_reduce and a read-out into reduce_res."""
    require_tile("activation_reduce", "reduce_res", reduce_res)
    activation(dst, op, data, bias=bias, scale=scale, reduce_op=reduce_op,
               reduce_res=reduce_res, reduce_cmd=reduce_cmd.reset_reduce, name=name)

