"""DMA copy/transpose: data, casts, byte counts and the placement rules."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from emu_helpers import last_record, tile, val
from qwen35_neuron.kernels.nki_emulator import NkiRuleError, isa as nisa, language as nl


def test_dma_copy_hbm_to_sbuf_with_cast_and_reshape(rng, program):
    x = rng.standard_normal((2, 64, 8)).astype(np.float32)
    hbm = tile(x, buffer=nl.shared_hbm)
    sb = nl.ndarray((128, 8), nl.bfloat16)
    nisa.dma_copy(sb, hbm)
    want = x.reshape(128, 8).astype(ml_dtypes.bfloat16)
    assert np.array_equal(sb.numpy().view(np.uint16), want.view(np.uint16))
    rec = last_record(program)
    assert (rec.engine, rec.bytes, rec.hbm_bytes, rec.descriptors) == ("DMA", 4096, 4096, 1)


def test_dma_copy_strided_counts_descriptors(program):
    hbm = tile(np.arange(64.0).reshape(8, 8), buffer=nl.shared_hbm)
    sb = nl.ndarray((8, 2), nl.float32)
    nisa.dma_copy(sb, hbm[:, 2:4])
    np.testing.assert_array_equal(val(sb), np.arange(64.0).reshape(8, 8)[:, 2:4])
    assert last_record(program).descriptors == 8


def test_dma_rules():
    sb = nl.ndarray((4, 4), nl.float32)
    with pytest.raises(NkiRuleError, match="DMA cannot read PSUM"):
        nisa.dma_copy(sb, tile(np.ones((4, 4)), buffer=nl.psum))
    with pytest.raises(NkiRuleError, match="DMA cannot write PSUM"):
        nisa.dma_copy(nl.ndarray((4, 4), nl.float32, buffer=nl.psum), tile(np.ones((4, 4))))
    with pytest.raises(NkiRuleError, match="element-count"):
        nisa.dma_copy(sb, tile(np.ones((4, 5)), buffer=nl.shared_hbm))
    with pytest.raises(NkiRuleError, match="hwdge"):
        nisa.dma_copy(sb, tile(np.ones((4, 4)), nl.bfloat16, buffer=nl.shared_hbm),
                      dge_mode=nisa.dge_mode.hwdge)


def test_dma_copy_hbm_to_hbm_and_sbuf_to_sbuf():
    src = tile(np.arange(6.0).reshape(2, 3), buffer=nl.shared_hbm)
    dst = nl.ndarray((3, 2), nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst, src)
    np.testing.assert_array_equal(val(dst), np.arange(6.0).reshape(3, 2))
    a, b = tile(np.ones((2, 3))), nl.ndarray((2, 3), nl.float32)
    nisa.dma_copy(b, a)
    np.testing.assert_array_equal(val(b), np.ones((2, 3)))


def test_dma_transpose(rng, program):
    x = rng.standard_normal((16, 48)).astype(np.float32)
    dst = nl.ndarray((48, 16), nl.float32)
    nisa.dma_transpose(dst, tile(x, buffer=nl.shared_hbm))
    np.testing.assert_array_equal(val(dst), x.T)
    assert last_record(program).dma_efficiency == 0.9
    with pytest.raises(NkiRuleError, match="dma-transpose"):
        nisa.dma_transpose(nl.ndarray((16, 48), nl.float32), tile(x))
    with pytest.raises(NkiRuleError, match="dtype"):
        nisa.dma_transpose(nl.ndarray((48, 16), nl.bfloat16), tile(x))


def test_dma_transpose_3d_and_4d_use_the_documented_permutations(rng):
    """3-D inputs are permuted [2, 1, 0] and 4-D inputs [3, 1, 2, 0] (nki.isa.dma_transpose)."""
    x3 = rng.standard_normal((4, 3, 2)).astype(np.float32)
    dst3 = nl.ndarray((2, 3, 4), nl.float32)
    nisa.dma_transpose(dst3, tile(x3, buffer=nl.shared_hbm))
    np.testing.assert_array_equal(dst3.numpy(), np.transpose(x3, (2, 1, 0)))
    x4 = rng.standard_normal((8, 1, 2, 4)).astype(np.float32)
    dst4 = nl.ndarray((4, 1, 2, 8), nl.float32)
    nisa.dma_transpose(dst4, tile(x4, buffer=nl.shared_hbm), axes=(3, 1, 2, 0))
    np.testing.assert_array_equal(dst4.numpy(), np.transpose(x4, (3, 1, 2, 0)))
    with pytest.raises(NkiRuleError, match="only supported permutation"):
        nisa.dma_transpose(dst3, tile(x3, buffer=nl.shared_hbm), axes=(0, 2, 1))


def test_dma_transpose_hwdge_rules():
    """hwdge transposes need src.shape[0] == 16, src.shape[-1] % 128 == 0 and a 2-byte dtype."""
    ok = tile(np.ones((16, 128)), nl.bfloat16)
    nisa.dma_transpose(nl.ndarray((128, 16), nl.bfloat16), ok, dge_mode=nisa.dge_mode.hwdge)
    for shape, dtype in (((16, 64), nl.bfloat16), ((32, 128), nl.bfloat16), ((16, 128), nl.float32)):
        with pytest.raises(NkiRuleError, match="hwdge transpose"):
            nisa.dma_transpose(nl.ndarray(shape[::-1], dtype), tile(np.ones(shape), dtype),
                               dge_mode=nisa.dge_mode.hwdge)
    nisa.dma_transpose(nl.ndarray((64, 16), nl.bfloat16), tile(np.ones((16, 64)), nl.bfloat16))  # unknown: fine


def test_vector_offset_gather_rows_the_documented_example():
    a = np.arange(128 * 16, dtype=np.float32).reshape(128, 16)
    rows = tile(np.arange(0, 128, 2).reshape(64, 1), nl.int32)
    out = nl.ndarray((64, 16), nl.float32)
    nisa.dma_copy(dst=out, src=tile(a, buffer=nl.shared_hbm).ap([[16, 64], [1, 16]], 0, vector_offset=rows,
                                                                 indirect_dim=0))
    np.testing.assert_array_equal(val(out), a[0::2])


def test_vector_offset_scatter_and_oob_skip():
    hbm = tile(np.zeros((8, 4)), buffer=nl.shared_hbm)
    idx = tile(np.array([[5], [-1], [2]]), nl.int32)  # -1: out of bounds
    src = tile(np.arange(12.0).reshape(3, 4))
    with pytest.raises(NkiRuleError, match="oob_mode"):
        nisa.dma_copy(dst=hbm.ap([[4, 3], [1, 4]], 0, vector_offset=idx), src=src)
    nisa.dma_copy(dst=hbm.ap([[4, 3], [1, 4]], 0, vector_offset=idx), src=src, oob_mode=nisa.oob_mode.skip)
    want = np.zeros((8, 4))
    want[5], want[2] = [0, 1, 2, 3], [8, 9, 10, 11]
    np.testing.assert_array_equal(val(hbm), want)


def test_scalar_offset_out_of_bounds_is_skipped_with_oob_skip():
    hbm = tile(np.zeros((4, 4)), buffer=nl.shared_hbm)
    where = tile(np.array([[100]]), nl.int32)
    nisa.dma_copy(dst=hbm.ap([[4, 1], [1, 4]], 0, scalar_offset=where, indirect_dim=0),
                  src=tile(np.ones((1, 4))), oob_mode=nisa.oob_mode.skip)
    assert (val(hbm) == 0).all()
    nisa.memset(where, 2)
    nisa.dma_copy(dst=hbm.ap([[4, 1], [1, 4]], 0, scalar_offset=where, indirect_dim=0), src=tile(np.ones((1, 4))))
    np.testing.assert_array_equal(val(hbm)[2], 1)


def test_ap_dtype_reinterprets_the_bytes():
    x = np.arange(8, dtype=np.float32)
    hbm = tile(x.reshape(2, 4), buffer=nl.shared_hbm)
    out = nl.ndarray((1, 8), nl.int16)
    nisa.dma_copy(dst=out, src=hbm.ap([[16, 1], [1, 8]], 4, dtype=nl.int16))  # bytes 8..24
    np.testing.assert_array_equal(out.numpy().reshape(-1), x.view(np.int16)[4:12])


def test_dma_compute_sums_sources_in_fp32(program):
    a, b = np.full((4, 4), 1.5, np.float32), np.arange(16, dtype=np.float32).reshape(4, 4)
    dst = nl.ndarray((4, 4), nl.bfloat16)
    nisa.dma_compute(dst, [tile(a, buffer=nl.shared_hbm), tile(b)], nl.add)
    np.testing.assert_array_equal(val(dst), a + b)
    assert last_record(program).op == "dma_compute"
    with pytest.raises(NkiRuleError, match="scale must be 1.0"):
        nisa.dma_compute(dst, [tile(a)], nl.add, scales=[2.0])
    with pytest.raises(NkiRuleError, match="nl.add"):
        nisa.dma_compute(dst, [tile(a)], nl.maximum)


def test_dma_compute_scatter_read_modify_write():
    hbm = tile(np.ones((6, 2)), buffer=nl.shared_hbm)
    idx = tile(np.array([[4], [1]]), nl.int32)
    view = hbm.ap([[2, 2], [1, 2]], 0, vector_offset=idx)
    nisa.dma_compute(view, [view, tile(np.array([[10.0, 20.0], [30.0, 40.0]]))], nl.add)
    np.testing.assert_array_equal(val(hbm)[[4, 1]], [[11, 21], [31, 41]])
    assert val(hbm)[0].tolist() == [1, 1]


def test_dma_transpose_with_dge_mode_none_given_as_its_integer():
    """nki-library's moe_tkg passes dge_mode=3 (none, static DMA) to dma_transpose."""
    x = np.arange(12.0).reshape(3, 4)
    dst = nl.ndarray((4, 3), nl.float32)
    nisa.dma_transpose(dst, tile(x, buffer=nl.shared_hbm), dge_mode=3)
    np.testing.assert_array_equal(val(dst), x.T)
    with pytest.raises(NkiRuleError, match="dge_mode"):
        nisa.dma_transpose(dst, tile(x, buffer=nl.shared_hbm), dge_mode=nisa.dge_mode.swdge)
