"""Engine-sequencer registers: `nisa.register_alloc/move/load/store` and `VirtualRegister`.

On hardware a register holds a runtime scalar (32-bit) that drives dynamic loops
(`nl.dynamic_range(reg)`, `while reg:`) and dynamic addressing (`.ap(scalar_offset=reg)`).
The emulator runs eagerly, so a register simply holds its current Python int and converts
with `int()` / `bool()` wherever a loop bound or an offset is needed (NKI docs,
nki.isa.register_alloc and nki.isa.VirtualRegister).
"""
from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from . import rules
from .operands import require_tile
from .tensor import NkiTensor

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


class VirtualRegister:
    """A 32-bit engine register (its current value; None until written)."""

    __slots__ = ("value",)

    def __init__(self, value: Optional[int] = None) -> None:
        self.value = value

    def _get(self) -> int:
        if self.value is None:
            rules.fail("register", "read of a register that was never written (register_alloc() "
                       "without a value, and no register_move / register_load since)")
        return int(self.value)

    def __int__(self) -> int:
        return self._get()

    __index__ = __int__

    def __bool__(self) -> bool:
        return self._get() != 0

    def __repr__(self) -> str:
        return f"VirtualRegister({self.value})"


def _as_int32(value: Any, where: str) -> int:
    v = int(value)
    if not INT32_MIN <= v <= INT32_MAX:
        rules.fail("register", f"{where}: value {v} does not fit a 32-bit register")
    return v


def register_alloc(x: Optional[int] = None) -> VirtualRegister:
    """A new register, holding `x` when given."""
    return VirtualRegister(None if x is None else _as_int32(x, "register_alloc"))


def register_move(dst: VirtualRegister, src: Union[int, VirtualRegister]) -> None:
    """dst = an integer constant or another register's value."""
    if not isinstance(dst, VirtualRegister):
        rules.fail("register", f"register_move: dst must be a register, got {type(dst).__name__}")
    dst.value = _as_int32(src, "register_move")


def _scalar_tile(instr: str, t: NkiTensor) -> None:
    require_tile(instr, "tensor", t)
    if t.size != 1:
        rules.fail("register", f"{instr}: the tensor must hold exactly one element, has shape {t.shape}")
    if t.dtype.itemsize > 4:
        rules.fail("register", f"{instr}: a register holds 32 bits; dtype {t.dtype} is wider")


def register_load(dst: VirtualRegister, src: NkiTensor) -> None:
    """dst = the single (up to 32-bit) value of `src` (HBM or SBUF)."""
    instr = "register_load"
    if not isinstance(dst, VirtualRegister):
        rules.fail("register", f"{instr}: dst must be a register, got {type(dst).__name__}")
    _scalar_tile(instr, src)
    dst.value = _as_int32(np.asarray(src._read(instr)).reshape(-1)[0], instr)


def register_store(dst: NkiTensor, src: VirtualRegister) -> None:
    """Write the register's value into the one-element tensor `dst`."""
    instr = "register_store"
    _scalar_tile(instr, dst)
    dst._write(np.asarray([int(src)], dtype=np.int64), instr)

