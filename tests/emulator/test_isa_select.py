"""VectorE selection and search (NKI docs: nki.isa.range_select, select_reduce, max8,
nc_find_index8, nc_match_replace8), checked against the docs' NumPy semantics and examples."""
from __future__ import annotations

import numpy as np
import pytest

from emu_helpers import last_record, tile, val
from qwen35_neuron.kernels.nki_emulator import NkiRuleError, isa as nisa, language as nl

FP32_MIN = float(np.finfo(np.float32).min)


def test_range_select_matches_the_documented_numpy(rng, program):
    x = rng.standard_normal((4, 16)).astype(np.float32)
    lo = np.array([[2.0], [0.0], [5.0], [20.0]], np.float32)
    hi = np.array([[9.0], [3.0], [21.0], [30.0]], np.float32)
    dst, res = nl.ndarray((4, 16), nl.float32), nl.ndarray((4, 1), nl.float32)
    nisa.range_select(dst, tile(x), nl.greater_equal, nl.less, tile(lo), tile(hi), reduce_res=res,
                      range_start=4, on_false_value=FP32_MIN)
    idx = 4 + np.arange(16, dtype=np.float32)[None, :]
    want = np.where((idx >= lo) & (idx < hi), x, FP32_MIN)
    np.testing.assert_array_equal(val(dst), want)
    np.testing.assert_array_equal(val(res), want.max(axis=1, keepdims=True))
    assert last_record(program).engine == "Vector"


def test_range_select_chains_the_max_through_the_registers():
    a, b = np.array([[1.0, 7.0]], np.float32), np.array([[3.0, 2.0]], np.float32)
    lo, hi = tile(np.zeros((1, 1))), tile(np.full((1, 1), 99.0))
    dst, res = nl.ndarray((1, 2), nl.float32), nl.ndarray((1, 1), nl.float32)
    nisa.range_select(dst, tile(a), nl.greater_equal, nl.less, lo, hi, reduce_cmd=nisa.reduce_cmd.reset_reduce)
    nisa.range_select(dst, tile(b), nl.greater_equal, nl.less, lo, hi, reduce_cmd=nisa.reduce_cmd.reduce,
                      reduce_res=res)
    assert val(res)[0, 0] == 7.0  # max over both calls


def test_range_select_bf16_output_turns_the_fill_into_minus_inf():
    dst = nl.ndarray((1, 4), nl.bfloat16)
    nisa.range_select(dst, tile(np.ones((1, 4)), nl.bfloat16), nl.less, nl.less,
                      tile(np.full((1, 1), 2.0)), tile(np.full((1, 1), 9.0)))
    np.testing.assert_array_equal(val(dst), [[1, 1, -np.inf, -np.inf]])  # the docs' stability note


def test_range_select_rules():
    t, b = tile(np.ones((2, 4))), tile(np.ones((2, 1)))
    with pytest.raises(NkiRuleError, match="FP32_MIN"):
        nisa.range_select(t, t, nl.less, nl.less, b, b, on_false_value=0.0)
    with pytest.raises(NkiRuleError, match="comp_op0"):
        nisa.range_select(t, t, nl.add, nl.less, b, b)
    with pytest.raises(NkiRuleError, match="nl.maximum"):
        nisa.range_select(t, t, nl.less, nl.less, b, b, reduce_op=nl.add)


def test_select_reduce_with_a_column_on_false_and_reverse_pred():
    pred = tile(np.array([[1, 0, 1], [0, 0, 1]]), nl.uint8)
    on_true = tile(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    on_false = tile(np.array([[-1.0], [9.0]]))
    dst, res = nl.ndarray((2, 3), nl.float32), nl.ndarray((2, 1), nl.float32)
    nisa.select_reduce(dst, pred, on_true, on_false, reduce_res=res, reduce_cmd=nisa.reduce_cmd.reset_reduce,
                       reverse_pred=True)
    np.testing.assert_array_equal(val(dst), [[-1, 2, -1], [4, 5, 9]])
    np.testing.assert_array_equal(val(res), [[2], [9]])


def test_max8_descending_top_eight(rng):
    x = rng.standard_normal((3, 40)).astype(np.float32)
    dst = nl.ndarray((3, 8), nl.float32)
    nisa.max8(dst, tile(x))
    np.testing.assert_array_equal(val(dst), -np.sort(-x, axis=1)[:, :8])


def test_nc_find_index8_first_occurrence_duplicates_ascending_and_missing_sentinel():
    data = tile(np.array([[5, 1, 8, 8, 3, 8, 0, 2, 8, 4]], np.float32))
    vals = tile(np.array([[8, 8, 3, 7, 5, 8, 0, 1]], np.float32))
    dst = nl.ndarray((1, 8), nl.uint32)
    nisa.nc_find_index8(dst, data, vals)
    np.testing.assert_array_equal(dst.numpy(), [[2, 3, 4, 0xFFFFFFFF, 0, 5, 6, 1]])


def test_nc_match_replace8_the_documented_duplicate_example():
    data = tile(np.array([[1, 2, 3, 4, 8, 8, 8, 8, 8, 8, 8]], np.float32))
    vals = tile(np.array([[3, 8, 8, 8, 8, 8, 8, 8]], np.float32))
    dst, idx = nl.ndarray((1, 11), nl.float32), nl.ndarray((1, 8), nl.uint32)
    nisa.nc_match_replace8(dst, data, vals, imm=-1.0, dst_idx=idx)
    np.testing.assert_array_equal(idx.numpy(), [[2, 10, 9, 8, 7, 6, 5, 4]])  # the docs' example
    np.testing.assert_array_equal(val(dst), [[1, 2, -1, 4, -1, -1, -1, -1, -1, -1, -1]])


def test_search_size_limits():
    with pytest.raises(NkiRuleError, match="8 to 16384") as err:
        nisa.max8(nl.ndarray((1, 8), nl.float32), tile(np.ones((1, 4))))
    assert err.value.rule == "search-size"
