"""GpSimd iota and affine_select against numpy."""
from __future__ import annotations

import numpy as np
import pytest

from emu_helpers import last_record, tile, val
from qwen35_neuron.kernels.nki_emulator import NkiRuleError, isa as nisa, language as nl


def test_iota_pattern_and_channel_multiplier(program):
    dst = nl.ndarray((4, 2, 3), nl.int32)
    nisa.iota(dst, [[10, 2], [1, 3]], offset=5, channel_multiplier=100)
    p, i, j = np.meshgrid(np.arange(4), np.arange(2), np.arange(3), indexing="ij")
    np.testing.assert_array_equal(dst.numpy(), 5 + 100 * p + 10 * i + j)
    assert last_record(program).engine == "GpSimd"


def test_iota_float_dst():
    dst = nl.ndarray((2, 4), nl.float32)
    nisa.iota(dst, [[-1, 4]], offset=0, channel_multiplier=1)
    np.testing.assert_array_equal(val(dst), [[0, -1, -2, -3], [1, 0, -1, -2]])


def test_affine_select_causal_mask(rng):
    x = rng.standard_normal((8, 8))
    dst = nl.ndarray((8, 8), nl.float32)
    nisa.affine_select(dst, [[-1, 8]], 1, tile(x), -9999.0, cmp_op=nl.greater_equal)
    np.testing.assert_allclose(val(dst), np.where(np.tril(np.ones((8, 8))) > 0, x, -9999.0), rtol=1e-6)


def test_affine_select_offset_and_bf16():
    dst = nl.ndarray((4, 4), nl.bfloat16)
    nisa.affine_select(dst, [[1, 4]], -1, tile(np.ones((4, 4)), nl.bfloat16), 0.0,
                       cmp_op=nl.equal, offset=1)  # keep where f - p + 1 == 0
    np.testing.assert_array_equal(val(dst), np.eye(4, k=-1))


def test_gpsimd_rules():
    with pytest.raises(NkiRuleError, match="buffer"):
        nisa.iota(nl.ndarray((2, 2), nl.float32, buffer=nl.psum), [[1, 2]])
    with pytest.raises(NkiRuleError, match="pattern"):
        nisa.iota(nl.ndarray((2, 3), nl.int32), [[1, 2]])
    with pytest.raises(NkiRuleError, match="pattern"):
        nisa.iota(nl.ndarray((2, 32), nl.int32), [[1, 2]] * 5)
    with pytest.raises(NkiRuleError, match="buffer"):
        nisa.affine_select(nl.ndarray((2, 2), nl.float32), [[1, 2]], 0,
                           tile(np.ones((2, 2)), buffer=nl.psum), 0.0)


def test_nonzero_with_count_the_documented_example_on_gpsimd_core_partitions(program):
    src = np.zeros((32, 8), np.int32)
    src[0] = [0, 1, 1, 0, 0, 1, 0, 0]  # the docs' example row
    src[1] = 1  # not a GpSimd core's first partition: ignored
    src[16] = [3, 0, 0, 0, 0, 0, 0, 2]
    dst = nl.ndarray((32, 9), nl.int32)
    nisa.memset(dst, 7)
    nisa.nonzero_with_count(dst, tile(src, nl.int32), index_offset=16, padding_val=-1)
    out = dst.numpy()
    np.testing.assert_array_equal(out[0], [17, 18, 21, -1, -1, -1, -1, -1, 3])
    np.testing.assert_array_equal(out[16], [16, 23, -1, -1, -1, -1, -1, -1, 2])
    assert (out[1] == 7).all()  # other partitions untouched
    assert last_record(program).engine == "GpSimd"


def test_local_gather_matches_the_documented_numpy(rng):
    src = (rng.random((32, 64, 4)) * 100).astype(np.float32)
    index_per_core = rng.integers(0, 64, size=(16, 4)).astype(np.uint16)
    index = np.tile(index_per_core, (2, 1))
    k, valid = 4, 40
    dst = nl.ndarray((32, valid, k), nl.float32)
    nisa.local_gather(dst, tile(src), tile(index * k, nl.uint16), num_elem_per_idx=k, num_valid_indices=valid)
    want = np.empty((32, valid, k), np.float32)
    for core in range(2):
        rows = slice(16 * core, 16 * core + 16)
        want[rows] = np.take(src[rows], index[rows].flatten(order="F")[:valid], axis=1)
    np.testing.assert_array_equal(dst.numpy(), want)


def test_nc_n_gather_within_each_partition(rng):
    data = rng.standard_normal((4, 2, 8)).astype(np.float32)
    idx = rng.integers(0, 16, size=(4, 5)).astype(np.uint32)
    dst = nl.ndarray((4, 5), nl.float32)
    nisa.nc_n_gather(dst, tile(data), tile(idx, nl.uint32))
    np.testing.assert_array_equal(dst.numpy(), np.take_along_axis(data.reshape(4, 16), idx.astype(np.int64), 1))
