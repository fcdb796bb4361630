"""Operator tokens (`nl.add`, `nl.exp`, ...) with their numpy meaning.

In NKI the same name is both an operator token passed as `op=` to ISA instructions and a
convenience function (`nl.exp(tile)`). `Op` plays both roles: ISA code reads `.fn`, and
calling the token runs the convenience path in `convenience.py`.

Legality sets follow the NKI 0.6 docs (nki.api.shared.rst): `alu` = the Vector/GpSimd
ALU operator table ("Supported Math Operators for NKI ISA"), `act` = the ScalarE
activation table. `nl.divide` and `nl.negative` appear in neither, so ISA calls reject
them (a kernel note from the public index reports the compiler rejecting
`tensor_tensor(op=nl.divide)`); they still work as `nl.divide(x, y)` convenience calls.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch


@dataclass(frozen=True, eq=False)
class Op:
    """One operator token. `fn` works on fp32 (or int64 for integer math) numpy arrays."""

    name: str
    arity: int
    fn: Callable[..., np.ndarray]
    alu: bool = False
    act: bool = False
    bitvec: bool = False
    reducible: bool = False
    identity: Optional[float] = None
    act_range: Optional[tuple] = None  # (lo, hi) on |x| or x; see in_act_range

    def __call__(self, *args: Any, dtype: Any = None, **kwargs: Any) -> Any:
        from .convenience import apply_op  # late import: convenience needs the ISA layer
        return apply_op(self, args, dtype=dtype, **kwargs)

    def __repr__(self) -> str:
        return f"nl.{self.name}"


def _f(x: np.ndarray) -> np.ndarray:
    return np.asarray(x)


def _bool(x: np.ndarray) -> np.ndarray:
    return np.asarray(x) != 0


def _as_num(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


def _erf(x: np.ndarray) -> np.ndarray:
    # torch's erf: exact to fp32 and already a dependency (no scipy needed)
    return torch.erf(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy().astype(np.float32)


def _gelu(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return (0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))).astype(np.float32)


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)
    return (0.5 * x * (1.0 + np.tanh(inner))).astype(np.float32)


def _gelu_sigmoid(x: np.ndarray) -> np.ndarray:
    """GELU's sigmoid approximation x * sigmoid(1.702 x)."""
    x = np.asarray(x, dtype=np.float32)
    return (x * _sigmoid(np.float32(1.702) * x)).astype(np.float32)


def _gelu_sigmoid_dx(x: np.ndarray) -> np.ndarray:
    """d/dx of x * sigmoid(a x) = s + a x s (1 - s), s = sigmoid(a x), a = 1.702."""
    x = np.asarray(x, dtype=np.float32)
    s = _sigmoid(np.float32(1.702) * x)
    return (s + np.float32(1.702) * x * s * (1 - s)).astype(np.float32)


def _silu_dx(x: np.ndarray) -> np.ndarray:
    """d/dx of x * sigmoid(x) = s (1 + x (1 - s))."""
    x = np.asarray(x, dtype=np.float32)
    s = _sigmoid(x)
    return (s * (1 + x * (1 - s))).astype(np.float32)


def _rsqrt(x: np.ndarray) -> np.ndarray:
    return (1.0 / np.sqrt(x)).astype(np.float32)


def _binary(name: str, fn: Callable, **kw: Any) -> Op:
    return Op(name, 2, fn, alu=kw.pop("alu", True), **kw)


def _unary(name: str, fn: Callable, **kw: Any) -> Op:
    return Op(name, 1, fn, **kw)


add = _binary("add", np.add, reducible=True, identity=0.0)
subtract = _binary("subtract", np.subtract)
multiply = _binary("multiply", np.multiply, reducible=True, identity=1.0)
divide = _binary("divide", np.divide, alu=False)
maximum = _binary("maximum", np.maximum, reducible=True, identity=-np.inf)
minimum = _binary("minimum", np.minimum, reducible=True, identity=np.inf)
power = _binary("power", np.power)
abs_max = _binary("abs_max", lambda a, b: np.maximum(np.abs(a), np.abs(b)))
abs_min = _binary("abs_min", lambda a, b: np.minimum(np.abs(a), np.abs(b)))
equal = _binary("equal", lambda a, b: _as_num(_f(a) == _f(b)))
not_equal = _binary("not_equal", lambda a, b: _as_num(_f(a) != _f(b)))
greater = _binary("greater", lambda a, b: _as_num(_f(a) > _f(b)))
greater_equal = _binary("greater_equal", lambda a, b: _as_num(_f(a) >= _f(b)))
less = _binary("less", lambda a, b: _as_num(_f(a) < _f(b)))
less_equal = _binary("less_equal", lambda a, b: _as_num(_f(a) <= _f(b)))
logical_and = _binary("logical_and", lambda a, b: _as_num(_bool(a) & _bool(b)), reducible=True, identity=1.0)
logical_or = _binary("logical_or", lambda a, b: _as_num(_bool(a) | _bool(b)), reducible=True, identity=0.0)
logical_xor = _binary("logical_xor", lambda a, b: _as_num(_bool(a) ^ _bool(b)), reducible=True, identity=0.0)
bitwise_and = _binary("bitwise_and", np.bitwise_and, bitvec=True, reducible=True, identity=-1)
bitwise_or = _binary("bitwise_or", np.bitwise_or, bitvec=True, reducible=True, identity=0)
bitwise_xor = _binary("bitwise_xor", np.bitwise_xor, bitvec=True, reducible=True, identity=0)
left_shift = _binary("left_shift", np.left_shift, bitvec=True)
right_shift = _binary("right_shift", np.right_shift, bitvec=True)

# Unary operators. act_range: documented valid input range of the ScalarE table.
copy = _unary("copy", lambda x: np.asarray(x, dtype=np.float32), act=True)
exp = _unary("exp", np.exp, act=True)
log = _unary("log", np.log, act=True, act_range=(2.0 ** -64, 2.0 ** 64))
sqrt = _unary("sqrt", np.sqrt, act=True, act_range=(2.0 ** -116, 2.0 ** 118))
rsqrt = _unary("rsqrt", _rsqrt, act=True, alu=True, act_range=(2.0 ** -87, 2.0 ** 97))
reciprocal = _unary("reciprocal", lambda x: (1.0 / np.asarray(x, np.float32)), act=True, alu=True,
                    act_range=("abs", 2.0 ** -42, 2.0 ** 42))
sigmoid = _unary("sigmoid", _sigmoid, act=True)
silu = _unary("silu", lambda x: (np.asarray(x, np.float32) * _sigmoid(x)).astype(np.float32), act=True)
softplus = _unary("softplus", lambda x: np.logaddexp(np.float32(0), np.asarray(x, np.float32)), act=True)
tanh = _unary("tanh", np.tanh, act=True)
gelu = _unary("gelu", _gelu, act=True)
gelu_apprx_tanh = _unary("gelu_apprx_tanh", _gelu_tanh, act=True)
gelu_apprx_sigmoid = _unary("gelu_apprx_sigmoid", _gelu_sigmoid, act=True)
gelu_apprx_sigmoid_dx = _unary("gelu_apprx_sigmoid_dx", _gelu_sigmoid_dx, act=True)
silu_dx = _unary("silu_dx", _silu_dx, act=True)
erf = _unary("erf", _erf, act=True)
relu = _unary("relu", lambda x: np.maximum(np.asarray(x, np.float32), np.float32(0)), act=True, alu=True)
square = _unary("square", np.square, act=True, alu=True)
abs = _unary("abs", np.abs, act=True, alu=True)  # noqa: A001 - NKI name
sign = _unary("sign", np.sign, act=True)
sin = _unary("sin", np.sin, act=True, act_range=(-math.pi, math.pi, "signed"))
arctan = _unary("arctan", np.arctan, act=True)
cos = _unary("cos", np.cos)
negative = _unary("negative", np.negative)
logical_not = _unary("logical_not", lambda x: _as_num(~_bool(x)))
invert = _unary("invert", np.invert, alu=True, bitvec=True)

# Reduction names some kernels pass where a reduce operator is expected.
REDUCE_ALIASES = {"sum": add, "max": maximum, "min": minimum}

ALL_OPS = {o.name: o for o in [
    add, subtract, multiply, divide, maximum, minimum, power, abs_max, abs_min, equal,
    not_equal, greater, greater_equal, less, less_equal, logical_and, logical_or,
    logical_xor, bitwise_and, bitwise_or, bitwise_xor, left_shift, right_shift, copy, exp,
    log, sqrt, rsqrt, reciprocal, sigmoid, silu, softplus, tanh, gelu, gelu_apprx_tanh,
    gelu_apprx_sigmoid, gelu_apprx_sigmoid_dx, silu_dx,
    erf, relu, square, abs, sign, sin, arctan, cos, negative, logical_not, invert]}


def out_of_act_range(op: Op, x: np.ndarray) -> int:
    """Number of finite elements outside `op`'s documented ScalarE input range (0 if none)."""
    if op.act_range is None:
        return 0
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    rng = op.act_range
    if rng[0] == "abs":
        ax = np.abs(x)
        bad = (ax < rng[1]) | (ax > rng[2])
    elif len(rng) == 3:  # signed interval such as sin's [-pi, pi]
        bad = (x < rng[0]) | (x > rng[1])
    else:
        bad = (x < rng[0]) | (x > rng[1])
    return int(np.count_nonzero(bad & finite))
