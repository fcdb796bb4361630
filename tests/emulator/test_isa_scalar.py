"""ScalarE activation against numpy: each op, scale/bias forms, the reduce registers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from emu_helpers import last_record, tile, val
from qwen35_neuron.kernels.nki_emulator import NkiRuleError, isa as nisa, language as nl

X = np.array([[-3.0, -0.5, 0.0, 0.25, 1.0, 4.0]], dtype=np.float32)
POS = np.array([[0.01, 0.5, 1.0, 2.0, 9.0, 100.0]], dtype=np.float32)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


ACT = {
    "exp": (np.exp, X), "log": (np.log, POS), "sqrt": (np.sqrt, POS),
    "rsqrt": (lambda x: 1 / np.sqrt(x), POS), "reciprocal": (lambda x: 1 / x, POS),
    "sigmoid": (_sigmoid, X), "silu": (lambda x: x * _sigmoid(x), X),
    "softplus": (lambda x: np.log1p(np.exp(x)), X), "tanh": (np.tanh, X),
    "gelu": (lambda x: 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))), X),
    "relu": (lambda x: np.maximum(x, 0), X), "square": (np.square, X), "abs": (np.abs, X),
    "copy": (lambda x: x, X), "sign": (np.sign, X),
}


@pytest.mark.parametrize("name", sorted(ACT))
def test_activation_each_op(name, program):
    fn, x = ACT[name]
    dst = nl.ndarray(x.shape, nl.float32)
    nisa.activation(dst, getattr(nl, name), tile(x))
    np.testing.assert_allclose(val(dst), fn(x.astype(np.float64)), rtol=2e-6, atol=1e-7)
    assert last_record(program).engine == "Scalar"


def test_activation_scale_and_bias_tiles(rng):
    x, sc, bi = rng.standard_normal((8, 16)), rng.standard_normal((8, 1)), rng.standard_normal((8, 1))
    dst = nl.ndarray((8, 16), nl.float32)
    nisa.activation(dst, nl.exp, tile(x), bias=tile(bi), scale=tile(sc))
    np.testing.assert_allclose(val(dst), np.exp(x * sc + bi), rtol=1e-5)
    nisa.activation(dst, nl.copy, tile(x), bias=0.5, scale=-2.0)
    np.testing.assert_allclose(val(dst), -2.0 * x + 0.5, rtol=1e-6, atol=1e-6)


def test_activation_reduce_registers(rng):
    x = rng.standard_normal((4, 10))
    dst, res = nl.ndarray((4, 10), nl.float32), nl.ndarray((4, 1), nl.float32)
    nisa.activation_reduce(dst, nl.exp, tile(x), reduce_op=nl.add, reduce_res=res, bias=tile(-np.ones((4, 1))))
    np.testing.assert_allclose(val(res).ravel(), np.exp(x - 1).sum(axis=1), rtol=1e-5)
    # Registers persist: reset, accumulate twice, then read out.
    nisa.activation(dst, nl.copy, tile(x), reduce_op=nl.add, reduce_cmd=nisa.reduce_cmd.reset_reduce)
    nisa.activation(dst, nl.copy, tile(x), reduce_op=nl.add, reduce_cmd=nisa.reduce_cmd.reduce,
                    reduce_res=res)
    np.testing.assert_allclose(val(res).ravel(), 2 * x.sum(axis=1), rtol=1e-5, atol=1e-6)


def test_activation_idle_reads_registers_without_touching_them(rng, program):
    """reduce_cmd=idle (the default) does not modify the lane registers (NKI docs): with
    reduce_res it reads out what earlier instructions accumulated, not this one's sums."""
    x, y = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    res = nl.ndarray((3, 1), nl.float32)
    scratch = nl.ndarray((3, 5), nl.float32)
    nisa.activation(scratch, nl.square, tile(x), reduce_op=nl.add, reduce_cmd=nisa.reduce_cmd.reset_reduce)
    nisa.activation(scratch, nl.exp, tile(y), reduce_op=nl.add, reduce_res=res)  # idle
    np.testing.assert_allclose(val(res).ravel(), (x ** 2).sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(val(scratch), np.exp(y), rtol=1e-6)  # the activation itself ran
    assert last_record(program).extra_cycles == 64
    nisa.activation(scratch, nl.copy, tile(y), reduce_cmd=nisa.reduce_cmd.reset, reduce_res=res)
    assert (val(res) == 0).all()


def test_activation_rules():
    x = tile(np.ones((4, 4)))
    dst = nl.ndarray((4, 4), nl.float32)
    with pytest.raises(NkiRuleError, match="not a ScalarE activation"):
        nisa.activation(dst, nl.negative, x)
    with pytest.raises(NkiRuleError, match="operand-shape"):
        nisa.activation(dst, nl.exp, x, bias=tile(np.ones((4, 4))))
    with pytest.raises(NkiRuleError, match="reduce_op must be nl.add"):
        nisa.activation(dst, nl.exp, x, reduce_op=nl.maximum, reduce_res=nl.ndarray((4, 1), nl.float32))
    with pytest.raises(NkiRuleError, match="scale tile must be float32"):
        nisa.activation(dst, nl.exp, x, scale=tile(np.ones((4, 1)), nl.bfloat16))


def test_activation_out_of_range_input_warns(program):
    dst = nl.ndarray((1, 2), nl.float32)
    nisa.activation(dst, nl.rsqrt, tile(np.array([[0.0, 4.0]])))
    assert any("rsqrt" in w for w in program.launch.warnings)
    assert val(dst)[0, 1] == 0.5
