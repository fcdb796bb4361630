"""Free-axis reductions, tensor_scalar_reduce, scans and the partition reduce."""
from __future__ import annotations

import numpy as np
import pytest

from emu_helpers import last_record, tile, val
from qwen35_neuron.kernels.nki_emulator import NkiRuleError, isa as nisa, language as nl


@pytest.mark.parametrize("op,fn", [(nl.add, np.sum), (nl.maximum, np.max), (nl.minimum, np.min),
                                   (nl.multiply, np.prod)])
def test_tensor_reduce_last_axis(op, fn, rng):
    x = rng.uniform(0.5, 1.5, (8, 12))
    dst = nl.ndarray((8, 1), nl.float32)
    nisa.tensor_reduce(dst, op, tile(x), axis=1)
    np.testing.assert_allclose(val(dst).ravel(), fn(x, axis=1), rtol=1e-5)


def test_tensor_reduce_two_trailing_axes_negate_keepdims(rng, program):
    x = rng.standard_normal((4, 3, 5, 6))
    dst = nl.ndarray((4, 3, 1, 1), nl.float32)
    nisa.tensor_reduce(dst, nl.add, tile(x), axis=(2, 3), negate=True, keepdims=True)
    np.testing.assert_allclose(val(dst), -x.sum(axis=(2, 3), keepdims=True), rtol=1e-5, atol=1e-6)
    assert last_record(program).free_elems == 90


def test_tensor_reduce_rules():
    x = tile(np.ones((4, 3, 5)))
    with pytest.raises(NkiRuleError, match="reduce-axis"):
        nisa.tensor_reduce(nl.ndarray((1, 15), nl.float32), nl.add, x, axis=0)
    with pytest.raises(NkiRuleError, match="trailing"):
        nisa.tensor_reduce(nl.ndarray((4, 5), nl.float32), nl.add, x, axis=1)
    with pytest.raises(NkiRuleError, match="shape-mismatch"):
        nisa.tensor_reduce(nl.ndarray((4, 2), nl.float32), nl.add, x, axis=2)
    with pytest.raises(NkiRuleError, match="not a legal reduction"):
        nisa.tensor_reduce(nl.ndarray((4, 3), nl.float32), nl.greater, x, axis=2)


def test_tensor_scalar_reduce_max(rng):
    x = rng.standard_normal((8, 16))
    dst, res = nl.ndarray((8, 16), nl.float32), nl.ndarray((8, 1), nl.float32)
    nisa.tensor_scalar_reduce(dst, tile(x), nl.multiply, 0.5, reduce_op=nl.maximum, reduce_res=res)
    np.testing.assert_allclose(val(dst), 0.5 * x, rtol=1e-6)
    np.testing.assert_allclose(val(res).ravel(), (0.5 * x).max(axis=1), rtol=1e-6)
    nisa.tensor_scalar_reduce(dst, tile(x), nl.add, 0.0, reduce_op=nl.add, reduce_res=res,
                              reduce_res_negate=True)
    np.testing.assert_allclose(val(res).ravel(), -x.sum(axis=1), rtol=1e-5, atol=1e-6)


def test_tensor_tensor_scan_linear_recurrence(rng, program):
    a, x = rng.uniform(0.5, 1.0, (4, 20)), rng.standard_normal((4, 20))
    h0 = rng.standard_normal((4, 1))
    dst = nl.ndarray((4, 20), nl.float32)
    nisa.tensor_tensor_scan(dst, tile(a), tile(x), tile(h0), op0=nl.multiply, op1=nl.add)
    h, want = h0.ravel().astype(np.float32), np.zeros((4, 20), np.float32)
    for i in range(20):
        h = (a[:, i].astype(np.float32) * h + x[:, i].astype(np.float32)).astype(np.float32)
        want[:, i] = h
    np.testing.assert_allclose(val(dst), want, rtol=1e-6, atol=1e-6)
    assert last_record(program).n_inputs == 2


def test_tensor_tensor_scan_cumsum_and_reverse():
    ones, x = tile(np.ones((2, 5))), tile(np.arange(10.0).reshape(2, 5))
    dst = nl.ndarray((2, 5), nl.float32)
    nisa.tensor_tensor_scan(dst, ones, x, 0.0, nl.multiply, nl.add)
    np.testing.assert_array_equal(val(dst), np.cumsum(np.arange(10.0).reshape(2, 5), axis=1))
    # reverse1: r[i] = x[i] - op0(...) with op0 = (1 * prev)
    nisa.tensor_tensor_scan(dst, ones, x, 0.0, nl.multiply, nl.subtract, reverse1=True)
    r, want = np.zeros(2), []
    for i in range(5):
        r = np.arange(10.0).reshape(2, 5)[:, i] - r
        want.append(r)
    np.testing.assert_array_equal(val(dst), np.stack(want, axis=1))


def test_tensor_partition_reduce(rng, program):
    x = rng.standard_normal((16, 8))
    dst = nl.ndarray((1, 8), nl.float32)
    nisa.tensor_partition_reduce(dst, nl.add, tile(x))
    np.testing.assert_allclose(val(dst).ravel(), x.sum(axis=0), rtol=1e-5, atol=1e-6)
    assert last_record(program).engine == "GpSimd"
    with pytest.raises(NkiRuleError, match="engine-psum-access"):
        nisa.tensor_partition_reduce(dst, nl.add, tile(x, buffer=nl.psum))


def test_bn_stats_then_bn_aggr_give_mean_and_population_variance(rng):
    x = rng.standard_normal((4, 1000)).astype(np.float32)
    stats = nl.ndarray((4, 12), nl.float32)
    for i in range(2):
        nisa.bn_stats(stats[:, 6 * i:6 * i + 6], tile(x[:, 500 * i:500 * i + 500]))
    mv = nl.ndarray((4, 2), nl.float32)
    nisa.bn_aggr(mv, stats)
    np.testing.assert_allclose(val(mv)[:, 0], x.mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(val(mv)[:, 1], x.var(axis=1), rtol=1e-5)
    s = val(stats)[:, :6]
    np.testing.assert_allclose(s[:, [0, 3]], 250)  # even and odd element counts
    np.testing.assert_allclose(s[:, 1], x[:, 0:500:2].mean(axis=1), rtol=1e-5, atol=1e-6)


def test_bn_stats_limit():
    with pytest.raises(NkiRuleError, match="bn_stats_fmax"):
        nisa.bn_stats(nl.ndarray((1, 6), nl.float32), tile(np.ones((1, 513))))
