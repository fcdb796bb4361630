"""VectorE element-wise instructions against numpy, and their operand rules."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from emu_helpers import last_record, tile, val
from qwen35_neuron.kernels.nki_emulator import NkiRuleError, isa as nisa, language as nl

BINARY = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "maximum": np.maximum,
    "minimum": np.minimum, "power": np.power,
    "equal": lambda a, b: (a == b) * 1.0, "not_equal": lambda a, b: (a != b) * 1.0,
    "greater": lambda a, b: (a > b) * 1.0, "greater_equal": lambda a, b: (a >= b) * 1.0,
    "less": lambda a, b: (a < b) * 1.0, "less_equal": lambda a, b: (a <= b) * 1.0,
    "logical_and": lambda a, b: ((a != 0) & (b != 0)) * 1.0,
    "logical_or": lambda a, b: ((a != 0) | (b != 0)) * 1.0,
}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_tensor_tensor_each_op(name, program):
    a = np.array([[0.5, 2.0, -1.0, 0.0], [3.0, 1.0, 1.0, 2.0]], dtype=np.float32)
    b = np.array([[2.0, 2.0, 0.0, 1.0], [0.5, 1.0, -2.0, 2.0]], dtype=np.float32)
    if name == "power":
        a = np.abs(a) + 0.5
    dst = nl.ndarray((2, 4), nl.float32)
    nisa.tensor_tensor(dst, tile(a), tile(b), op=getattr(nl, name))
    np.testing.assert_allclose(val(dst), BINARY[name](a, b), rtol=1e-6)
    assert last_record(program).engine == ("GpSimd" if name == "power" else "Vector")


def test_tensor_tensor_rounds_to_bf16_dst_and_allows_reshaped_free_dims(rng):
    a, b = rng.standard_normal((4, 12)), rng.standard_normal((4, 3, 4))
    dst = nl.ndarray((4, 2, 6), nl.bfloat16)
    nisa.tensor_tensor(dst, tile(a), tile(b), op=nl.add)
    want = (a.astype(np.float32) + b.reshape(4, 12).astype(np.float32)).astype(ml_dtypes.bfloat16)
    assert np.array_equal(dst.numpy().reshape(4, 12).view(np.uint16), want.view(np.uint16))


def test_tensor_tensor_int32_defaults_to_gpsimd_exact(program):
    a = np.array([[2 ** 30, 7]], dtype=np.int32)
    dst = nl.ndarray((1, 2), nl.int32)
    nisa.tensor_tensor(dst, tile(a, nl.int32), tile(np.array([[3, 5]]), nl.int32), op=nl.add)
    assert dst.numpy().tolist() == [[2 ** 30 + 3, 12]]
    assert last_record(program).engine == "GpSimd"


def test_tensor_tensor_rules():
    a, b = tile(np.ones((4, 4))), tile(np.ones((4, 4)))
    with pytest.raises(NkiRuleError, match="two-psum-inputs"):
        nisa.tensor_tensor(nl.ndarray((4, 4), nl.float32), tile(np.ones((4, 4)), buffer=nl.psum),
                           tile(np.ones((4, 4)), buffer=nl.psum), op=nl.add)
    with pytest.raises(NkiRuleError, match="partition-mismatch"):
        nisa.tensor_tensor(nl.ndarray((4, 4), nl.float32), a, tile(np.ones((2, 8))), op=nl.add)
    with pytest.raises(NkiRuleError, match="shape-mismatch"):
        nisa.tensor_tensor(nl.ndarray((4, 4), nl.float32), a, tile(np.ones((4, 5))), op=nl.add)
    with pytest.raises(NkiRuleError, match="not a supported ISA ALU operator"):
        nisa.tensor_tensor(nl.ndarray((4, 4), nl.float32), a, b, op=nl.divide)
    with pytest.raises(NkiRuleError, match="engine-psum-access"):
        nisa.tensor_tensor(nl.ndarray((4, 4), nl.float32), tile(np.ones((4, 4)), buffer=nl.psum), b, op=nl.power)
    with pytest.raises(NkiRuleError, match="bitvec"):
        nisa.tensor_tensor(nl.ndarray((4, 4), nl.float32), a, b, op=nl.bitwise_and)


def test_tensor_scalar_two_ops_with_column_and_reverse(rng, program):
    x, col = rng.standard_normal((8, 16)).astype(np.float32), rng.standard_normal((8, 1)).astype(np.float32)
    dst = nl.ndarray((8, 16), nl.float32)
    nisa.tensor_scalar(dst, tile(x), op0=nl.subtract, operand0=tile(col), reverse0=True,
                       op1=nl.multiply, operand1=3.0)
    np.testing.assert_allclose(val(dst), (col - x) * np.float32(3.0), rtol=1e-6)
    nisa.tensor_scalar(dst, tile(x), nl.maximum, 0.25, op1=nl.subtract, operand1=1.0, reverse1=True)
    np.testing.assert_allclose(val(dst), 1.0 - np.maximum(x, 0.25), rtol=1e-6)
    nisa.tensor_scalar(dst, tile(x), nl.abs, None)
    np.testing.assert_allclose(val(dst), np.abs(x), rtol=1e-6)
    assert last_record(program).engine == "Vector"


def test_tensor_scalar_rules():
    x = tile(np.ones((4, 4)))
    dst = nl.ndarray((4, 4), nl.float32)
    with pytest.raises(NkiRuleError, match="operand-shape"):
        nisa.tensor_scalar(dst, x, nl.add, tile(np.ones((4, 2))))
    with pytest.raises(NkiRuleError, match="must be float32"):
        nisa.tensor_scalar(dst, x, nl.add, tile(np.ones((4, 1)), nl.bfloat16))
    with pytest.raises(NkiRuleError, match="ScalarE on trn2"):
        nisa.tensor_scalar(dst, x, nl.maximum, 1.0, engine=nisa.engine.scalar)
    with pytest.raises(NkiRuleError, match="only allowed for nl.rsqrt"):
        nisa.tensor_scalar(dst, x, nl.add, 1.0, engine=nisa.engine.gpsimd)
    with pytest.raises(NkiRuleError, match="operand-type"):
        nisa.tensor_scalar(dst, x, nl.add, "one")


def test_tensor_scalar_on_scalar_engine_mult_add(program):
    dst = nl.ndarray((2, 3), nl.float32)
    nisa.tensor_scalar(dst, tile(np.ones((2, 3))), nl.multiply, 2.0, op1=nl.add, operand1=0.5,
                       engine=nisa.engine.scalar)
    np.testing.assert_array_equal(val(dst), np.full((2, 3), 2.5))
    assert last_record(program).engine == "Scalar"


def test_scalar_tensor_tensor(rng):
    x, col, y = rng.standard_normal((8, 6)), rng.standard_normal((8, 1)), rng.standard_normal((8, 6))
    dst = nl.ndarray((8, 6), nl.float32)
    nisa.scalar_tensor_tensor(dst, tile(x), nl.multiply, tile(col), nl.add, tile(y))
    np.testing.assert_allclose(val(dst), x * col + y, rtol=1e-5)
    nisa.scalar_tensor_tensor(dst, tile(x), nl.subtract, 2.0, nl.subtract, tile(y), reverse0=True, reverse1=True)
    np.testing.assert_allclose(val(dst), y - (2.0 - x), rtol=1e-5)
    with pytest.raises(NkiRuleError, match="two-psum-inputs"):
        nisa.scalar_tensor_tensor(dst, tile(x, buffer=nl.psum), nl.add, 1.0, nl.add, tile(y, buffer=nl.psum))


def test_reciprocal(rng):
    x = rng.uniform(0.5, 2.0, (4, 8))
    dst = nl.ndarray((4, 8), nl.float32)
    nisa.reciprocal(dst, tile(x))
    np.testing.assert_allclose(val(dst), 1.0 / x, rtol=1e-6)


def test_tensor_copy_casts_psum_to_bf16_sbuf(rng, program):
    x = rng.standard_normal((16, 32))
    dst = nl.ndarray((16, 32), nl.bfloat16)
    nisa.tensor_copy(dst, tile(x, buffer=nl.psum))
    want = x.astype(np.float32).astype(ml_dtypes.bfloat16)
    assert np.array_equal(dst.numpy().view(np.uint16), want.view(np.uint16))
    with pytest.raises(NkiRuleError, match="engine-psum-access"):
        nisa.tensor_copy(dst, tile(x, buffer=nl.psum), engine=nisa.engine.gpsimd)


def test_tensor_copy_int_is_bit_exact():
    big = np.array([[2 ** 31 - 1, -(2 ** 31)]], dtype=np.int32)
    dst = nl.ndarray((1, 2), nl.int32)
    nisa.tensor_copy(dst, tile(big, nl.int32))
    assert dst.numpy().tolist() == big.tolist()


def test_memset_values_and_dtype_rule():
    dst = nl.ndarray((4, 3), nl.float32)
    nisa.memset(dst, -1.5)
    np.testing.assert_array_equal(val(dst), np.full((4, 3), -1.5))
    idst = nl.ndarray((4, 3), nl.int32)
    nisa.memset(idst, 7)
    assert (idst.numpy() == 7).all()
    with pytest.raises(NkiRuleError, match="must be an int"):
        nisa.memset(idst, 1.0)


def test_tensor_copy_predicated():
    src = tile(np.arange(6.0).reshape(2, 3))
    dst = tile(np.full((2, 3), -1.0))
    pred = tile(np.array([[1, 0, 1], [0, 0, 1]]), nl.uint8)
    nisa.tensor_copy_predicated(dst, src, pred)
    np.testing.assert_array_equal(val(dst), [[0, -1, 2], [-1, -1, 5]])
    nisa.tensor_copy_predicated(dst, 9.0, pred, reverse_pred=True)
    np.testing.assert_array_equal(val(dst), [[0, 9, 2], [9, 9, 5]])
    with pytest.raises(NkiRuleError, match="predicate dtype"):
        nisa.tensor_copy_predicated(dst, src, tile(np.ones((2, 3))))


def test_stream_shuffle_broadcasts_partition_zero_to_all_quadrants():
    data = np.arange(128 * 4, dtype=np.float32).reshape(128, 4)
    t = tile(data)
    for q in range(4):
        nisa.nc_stream_shuffle(t[q * 32:(q + 1) * 32, :], t[0:32, :], [0] * 32)
    np.testing.assert_array_equal(val(t), np.tile(data[0], (128, 1)))


def test_stream_shuffle_permutation_and_keep():
    data = np.arange(64, dtype=np.float32).reshape(64, 1)
    dst = tile(np.full((64, 1), -1.0))
    mask = [31 - i for i in range(32)]
    mask[0] = 255
    nisa.nc_stream_shuffle(dst, tile(data), mask)
    want = np.concatenate([31 - np.arange(32), 63 - np.arange(32)]).astype(np.float64)
    want[0], want[32] = -1, -1
    np.testing.assert_array_equal(val(dst).ravel(), want)
    with pytest.raises(NkiRuleError, match="shuffle-mask"):
        nisa.nc_stream_shuffle(dst, tile(data), [0] * 31)
    with pytest.raises(NkiRuleError, match="shuffle-mask"):
        nisa.nc_stream_shuffle(tile(np.zeros((32, 1))), tile(np.zeros((4, 1))), [5] * 32)


def test_start_partition_rule():
    t = tile(np.zeros((128, 4)))
    dst = nl.ndarray((96, 4), nl.float32)
    with pytest.raises(NkiRuleError, match="start-partition"):
        nisa.tensor_copy(dst, t[32:128, :])
    with pytest.raises(NkiRuleError, match="start-partition"):
        nisa.tensor_copy(nl.ndarray((48, 4), nl.float32), t[32:80, :])
    nisa.tensor_copy(nl.ndarray((64, 4), nl.float32), t[64:128, :])  # allowed
    nisa.tensor_copy(nl.ndarray((16, 4), nl.float32), t[96:112, :])  # allowed


def test_memset_zero_float_into_an_int_tile_is_zero_with_a_warning(program):
    """0.0 is all-zero bits in every dtype; nki-library's cross_partition_copy memsets uint32 with it."""
    idst = nl.ndarray((2, 2), nl.uint32)
    nisa.memset(idst, 0.0)
    assert (idst.numpy() == 0).all()
    assert any("0.0 for a uint32 tile" in w for w in program.launch.warnings)
