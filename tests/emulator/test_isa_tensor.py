"""TensorE: nc_matmul and nc_transpose against numpy, including accumulate semantics."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from emu_helpers import last_record, tile, val
from qwen35_neuron.kernels.nki_emulator import NkiRuleError, isa as nisa, language as nl


def test_matmul_fp32_matches_numpy(rng, program):
    s, m = rng.standard_normal((64, 32)), rng.standard_normal((64, 100))
    dst = nl.ndarray((32, 100), nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst, tile(s), tile(m))
    np.testing.assert_allclose(val(dst), s.T @ m, rtol=1e-5, atol=1e-5)
    rec = last_record(program)
    assert (rec.engine, rec.free_elems, rec.fp32_matmul, rec.flops) == ("Tensor", 100, True, 2 * 64 * 32 * 100)


def test_matmul_bf16_inputs_are_rounded_then_fp32_accumulated(rng):
    s, m = rng.standard_normal((128, 16)), rng.standard_normal((128, 8))
    dst = nl.ndarray((16, 8), nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst, tile(s, nl.bfloat16), tile(m, nl.bfloat16))
    sb = s.astype(ml_dtypes.bfloat16).astype(np.float64)
    mb = m.astype(ml_dtypes.bfloat16).astype(np.float64)
    np.testing.assert_allclose(val(dst), sb.T @ mb, rtol=1e-5, atol=1e-4)
    assert np.abs(val(dst) - s.T @ m).max() > 1e-3  # rounding really happened


def test_matmul_fp8_inputs(rng):
    s, m = rng.standard_normal((32, 8)), rng.standard_normal((32, 4))
    dst = nl.ndarray((8, 4), nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst, tile(s, nl.float8_e4m3), tile(m, nl.float8_e5m2))
    want = s.astype(ml_dtypes.float8_e4m3).astype(np.float64).T @ m.astype(ml_dtypes.float8_e5m2).astype(np.float64)
    np.testing.assert_allclose(val(dst), want, rtol=1e-5, atol=1e-5)


def test_matmul_accumulate_none_overwrites_first_then_adds(rng):
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 5))
    dst = nl.ndarray((3, 5), nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst, tile(a), tile(b))
    nisa.nc_matmul(dst, tile(a), tile(b))
    np.testing.assert_allclose(val(dst), 2 * a.T @ b, rtol=1e-5)
    nisa.nc_matmul(dst, tile(a), tile(b), accumulate=False)
    np.testing.assert_allclose(val(dst), a.T @ b, rtol=1e-5)
    nisa.nc_matmul(dst, tile(a), tile(b), accumulate=True)
    np.testing.assert_allclose(val(dst), 2 * a.T @ b, rtol=1e-5)


def test_matmul_accumulate_none_per_element(rng):
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 5))
    dst = nl.ndarray((3, 10), nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst[:, 0:5], tile(a), tile(b))
    nisa.nc_matmul(dst[:, 0:5], tile(a), tile(b))
    nisa.nc_matmul(dst[:, 5:10], tile(a), tile(b))
    np.testing.assert_allclose(val(dst)[:, :5], 2 * a.T @ b, rtol=1e-5)
    np.testing.assert_allclose(val(dst)[:, 5:], a.T @ b, rtol=1e-5)


def test_matmul_accumulate_true_on_fresh_psum_is_an_error():
    dst = nl.ndarray((2, 2), nl.float32, buffer=nl.psum)
    with pytest.raises(NkiRuleError, match="matmul-accumulate"):
        nisa.nc_matmul(dst, tile(np.ones((2, 2))), tile(np.ones((2, 2))), accumulate=True)


def test_matmul_accumulate_true_after_memset_adds_onto_it_with_a_warning(program):
    """The NKI docs call accumulating onto PSUM a memset set undefined on trn2; AWS kernels do it
    and devices add onto the set value, so the emulator does that and records a warning."""
    dst = nl.ndarray((2, 2), nl.float32, buffer=nl.psum)
    nisa.memset(dst, 3.0)
    nisa.nc_matmul(dst, tile(np.ones((2, 2))), tile(np.ones((2, 2))), accumulate=True)
    np.testing.assert_array_equal(val(dst), np.full((2, 2), 5.0))
    assert any("undefined behaviour" in w for w in program.launch.warnings)
    nisa.nc_matmul(dst, tile(np.ones((2, 2))), tile(np.ones((2, 2))), accumulate=True)
    np.testing.assert_array_equal(val(dst), np.full((2, 2), 7.0))


def test_matmul_accumulate_none_after_memset_overwrites(program):
    """accumulate=None: the first matmul write to an element overwrites it (a memset is no matmul)."""
    dst = nl.ndarray((2, 2), nl.float32, buffer=nl.psum)
    nisa.memset(dst, 3.0)
    nisa.nc_matmul(dst, tile(np.ones((2, 2))), tile(np.ones((2, 2))))
    np.testing.assert_array_equal(val(dst), np.full((2, 2), 2.0))
    assert not program.launch.warnings


def test_matmul_is_transpose_is_bit_exact_with_nan_and_inf():
    """is_transpose=True transposes the stationary operand through the identity bit for bit
    (trn2): NaN and Inf land in their own element, they do not smear over rows as a product would."""
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    x[1, 2], x[3, 0], x[0, 1] = np.nan, np.inf, -np.inf
    src = tile(x, nl.bfloat16)
    dst = nl.ndarray((3, 4), nl.bfloat16, buffer=nl.psum)
    nisa.nc_matmul(dst, src, tile(np.eye(4), nl.bfloat16), is_transpose=True)
    got = dst.numpy()
    want = x.T.astype(nl.bfloat16)
    assert got.tobytes() == want.tobytes()
    with pytest.raises(NkiRuleError, match="matmul-transpose"):
        nisa.nc_matmul(dst, src, tile(np.full((4, 4), 0.5), nl.bfloat16), is_transpose=True)


def test_matmul_overwrite_after_memset_is_fine():
    dst = nl.ndarray((2, 2), nl.float32, buffer=nl.psum)
    nisa.memset(dst, 5.0)
    nisa.nc_matmul(dst, tile(np.ones((2, 2))), tile(np.ones((2, 2))), accumulate=False)
    np.testing.assert_array_equal(val(dst), np.full((2, 2), 2.0))


@pytest.mark.parametrize("shape_s,shape_m,dst_shape,rule", [
    ((129, 4), (129, 4), (4, 4), "partition-dim"),
    ((8, 4), (16, 4), (4, 4), "matmul-contraction"),
    ((8, 129), (8, 4), (129, 4), "partition-dim"),
    ((8, 4), (8, 513), (4, 513), "psum-tile-size"),
    ((8, 4), (8, 6), (4, 5), "matmul-dst-shape"),
])
def test_matmul_shape_limits(shape_s, shape_m, dst_shape, rule):
    with pytest.raises(NkiRuleError, match=rule):
        dst = nl.ndarray(dst_shape, nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst, tile(np.ones(shape_s)), tile(np.ones(shape_m)))


def test_matmul_moving_free_limit_512():
    dst = nl.ndarray((4, 520), nl.bfloat16, buffer=nl.psum)  # 1040 B fits a bank
    with pytest.raises(NkiRuleError, match="matmul-moving-free"):
        nisa.nc_matmul(dst, tile(np.ones((8, 4))), tile(np.ones((8, 520))))


def test_matmul_stationary_free_limit_with_row_tiling():
    dst = nl.ndarray((64, 4), nl.float32, buffer=nl.psum)
    with pytest.raises(NkiRuleError, match="matmul-stationary-free"):
        nisa.nc_matmul(dst, tile(np.ones((32, 64))), tile(np.ones((32, 4))),
                       tile_position=(0, 0), tile_size=(32, 32))
    with pytest.raises(NkiRuleError, match="matmul-contraction"):
        nisa.nc_matmul(dst, tile(np.ones((64, 64))), tile(np.ones((64, 4))),
                       tile_position=(0, 0), tile_size=(32, 128))
    with pytest.raises(NkiRuleError, match="matmul-tiling"):
        nisa.nc_matmul(dst, tile(np.ones((32, 64))), tile(np.ones((32, 4))),
                       tile_position=(16, 0), tile_size=(32, 128))


def test_matmul_buffers_and_dtypes():
    s, m = tile(np.ones((4, 4))), tile(np.ones((4, 4)))
    with pytest.raises(NkiRuleError, match="buffer"):
        nisa.nc_matmul(nl.ndarray((4, 4), nl.float32), s, m)  # dst in SBUF
    with pytest.raises(NkiRuleError, match="buffer"):
        nisa.nc_matmul(nl.ndarray((4, 4), nl.float32, buffer=nl.psum),
                       tile(np.ones((4, 4)), buffer=nl.psum), m)
    with pytest.raises(NkiRuleError, match="matmul-dtype"):
        nisa.nc_matmul(nl.ndarray((4, 4), nl.bfloat16, buffer=nl.psum), s, m)
    with pytest.raises(NkiRuleError, match="fp32/tf32 must pair"):
        nisa.nc_matmul(nl.ndarray((4, 4), nl.float32, buffer=nl.psum), s,
                       tile(np.ones((4, 4)), nl.bfloat16))
    with pytest.raises(NkiRuleError, match="matmul-dtype"):
        nisa.nc_matmul(nl.ndarray((4, 4), nl.float32, buffer=nl.psum),
                       tile(np.ones((4, 4)), nl.int32), tile(np.ones((4, 4)), nl.int32))


def test_matmul_with_hbm_operand_is_rejected():
    hbm = nl.ndarray((4, 4), nl.float32, buffer=nl.shared_hbm)
    with pytest.raises(NkiRuleError, match="hbm-operand"):
        nisa.nc_matmul(nl.ndarray((4, 4), nl.float32, buffer=nl.psum), hbm, tile(np.ones((4, 4))))


def test_transpose_tensor_engine(rng, program):
    x = rng.standard_normal((96, 40))
    dst = nl.ndarray((40, 96), nl.float32, buffer=nl.psum)
    nisa.nc_transpose(dst, tile(x))
    np.testing.assert_array_equal(val(dst), x.astype(np.float32).T)
    assert last_record(program).engine == "Tensor"


def test_transpose_bf16_keeps_dtype_and_bits(rng):
    x = rng.standard_normal((8, 16))
    src = tile(x, nl.bfloat16)
    dst = nl.ndarray((16, 8), nl.bfloat16, buffer=nl.psum)
    nisa.nc_transpose(dst, src)
    assert np.array_equal(dst.numpy().view(np.uint16), src.numpy().T.view(np.uint16))


def test_transpose_vector_engine(rng, program):
    x = rng.standard_normal((32, 32))
    dst = nl.ndarray((32, 32), nl.float32)
    nisa.nc_transpose(dst, tile(x), engine=nisa.engine.vector)
    np.testing.assert_array_equal(val(dst), x.astype(np.float32).T)
    assert last_record(program).engine == "Vector"


def test_transpose_limits_and_rules():
    with pytest.raises(NkiRuleError, match="transpose-size"):
        nisa.nc_transpose(nl.ndarray((33, 32), nl.float32), tile(np.ones((32, 33))), engine=nisa.engine.vector)
    with pytest.raises(NkiRuleError, match="transpose-size"):
        nisa.nc_transpose(nl.ndarray((128, 4), nl.float32, buffer=nl.psum), tile(np.ones((4, 200))))
    with pytest.raises(NkiRuleError, match="dtype"):
        nisa.nc_transpose(nl.ndarray((4, 4), nl.float32, buffer=nl.psum), tile(np.ones((4, 4)), nl.bfloat16))
    with pytest.raises(NkiRuleError, match="transpose-shape"):
        nisa.nc_transpose(nl.ndarray((4, 8), nl.float32, buffer=nl.psum), tile(np.ones((4, 8))))
    with pytest.raises(NkiRuleError, match="buffer"):
        nisa.nc_transpose(nl.ndarray((4, 4), nl.float32), tile(np.ones((4, 4))), engine=nisa.engine.tensor)


def test_matmul_double_row_fp8_splits_the_contraction_over_two_rows(rng, program):
    """perf_mode=double_row (NKI docs): [1, 256] @ [256, 3] as stationary [128, 2, 1] and moving
    [128, 2, 3] in FP8; one instruction, twice the FLOPs."""
    a = rng.standard_normal((128, 2, 1)).astype(ml_dtypes.float8_e4m3)
    b = rng.standard_normal((128, 2, 3)).astype(ml_dtypes.float8_e5m2)
    dst = nl.ndarray((1, 3), nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst, tile(a, nl.float8_e4m3), tile(b, nl.float8_e5m2),
                   perf_mode=nisa.matmul_perf_mode.double_row)
    want = a.astype(np.float64).reshape(256, 1).T @ b.astype(np.float64).reshape(256, 3)
    np.testing.assert_allclose(val(dst), want, rtol=1e-5)
    assert last_record(program).flops == 2 * 256 * 3
    with pytest.raises(NkiRuleError, match="float8"):
        nisa.nc_matmul(dst, tile(a.astype(np.float32), nl.bfloat16), tile(b, nl.float8_e5m2),
                       perf_mode=nisa.matmul_perf_mode.double_row)


def test_matmul_tile_size_below_32_is_a_32_tile_with_a_warning(program):
    dst = nl.ndarray((16, 4), nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst, tile(np.eye(16)[:, :16]), tile(np.ones((16, 4))), tile_position=(32, 32),
                   tile_size=(16, 16))
    assert (val(dst) == 1).all()
    assert any("not one of the documented" in w for w in program.launch.warnings)
    with pytest.raises(NkiRuleError, match="multiple of 32"):
        nisa.nc_matmul(dst, tile(np.eye(16)), tile(np.ones((16, 4))), tile_position=(16, 0), tile_size=(16, 16))
