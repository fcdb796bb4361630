"""nki.collectives across the ranks of a multi-rank launch (each rank its own HBM, all running
concurrently): all_reduce, all_gather, reduce_scatter, all_to_all, collective_permute, rank_id
(NKI docs, nki.collectives)."""
from __future__ import annotations

import numpy as np
import pytest

from qwen35_neuron.kernels.nki_emulator import NkiRuleError, collectives as ncc, isa as nisa
from qwen35_neuron.kernels.nki_emulator import language as nl, launch_ranks


def _run(kernel, per_rank, lnc=1):
    outs, _ = launch_ranks(kernel, [((x,), {}) for x in per_rank], lnc=lnc)
    return outs


def _load(x):
    t = nl.ndarray(x.shape, x.dtype)
    nisa.dma_copy(dst=t, src=x)
    return t


def test_all_reduce_sums_over_the_group_on_every_rank():
    def k(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.shared_hbm)
        t = _load(x)
        r = nl.ndarray(x.shape, nl.float32)
        ncc.all_reduce(srcs=[t], dsts=[r], replica_group=ncc.ReplicaGroup([[0, 1, 2, 3]]), op=nl.add)
        nisa.dma_copy(dst=out, src=r)
        return out
    xs = [np.full((4, 3), float(r + 1), np.float32) for r in range(4)]
    for out in _run(k, xs):
        np.testing.assert_array_equal(out, np.full((4, 3), 10.0))


def test_all_reduce_in_subgroups_with_lnc2_pairs_programs_by_id():
    def k(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.shared_hbm)
        me = nl.program_id(0)
        rows = x.shape[0] // 2
        t = nl.ndarray((rows, x.shape[1]), nl.float32)
        nisa.dma_copy(dst=t, src=x[me * rows:(me + 1) * rows, :])
        ncc.all_reduce(srcs=[t], dsts=[t], replica_group=ncc.ReplicaGroup([[0, 2], [1, 3]]), op=nl.maximum)
        nisa.dma_copy(dst=out[me * rows:(me + 1) * rows, :], src=t)
        return out
    xs = [np.arange(8, dtype=np.float32).reshape(4, 2) * (r + 1) for r in range(4)]
    outs = _run(k, xs, lnc=2)
    np.testing.assert_array_equal(outs[0], xs[2])
    np.testing.assert_array_equal(outs[1], xs[3])
    np.testing.assert_array_equal(outs[2], xs[2])


def test_all_gather_reduce_scatter_all_to_all_and_rank_id():
    group = ncc.ReplicaGroup([[0, 1]])

    def k(x):
        gathered = nl.ndarray((4, 2), nl.float32, buffer=nl.shared_hbm, name="g")
        scattered = nl.ndarray((1, 2), nl.float32, buffer=nl.shared_hbm, name="s")
        swapped = nl.ndarray((2, 2), nl.float32, buffer=nl.shared_hbm, name="a")
        rid = nl.ndarray((1, 1), nl.int32, buffer=nl.shared_hbm, name="r")
        ncc.all_gather(srcs=[x], dsts=[gathered], replica_group=group, collective_dim=0)
        ncc.reduce_scatter(srcs=[x], dsts=[scattered], replica_group=group, collective_dim=0, op=nl.add)
        ncc.all_to_all(srcs=[x], dsts=[swapped], replica_group=group, collective_dim=0)
        t = nl.ndarray((1, 1), nl.int32)
        nisa.register_store(t, ncc.rank_id())
        nisa.dma_copy(dst=rid, src=t)
        return gathered, scattered, swapped, rid
    a = np.array([[1, 2], [3, 4]], np.float32)
    b = np.array([[10, 20], [30, 40]], np.float32)
    (g0, s0, w0, r0), (g1, s1, w1, r1) = _run(k, [a, b])
    np.testing.assert_array_equal(g0, np.concatenate([a, b]))
    np.testing.assert_array_equal(g1, np.concatenate([a, b]))
    np.testing.assert_array_equal(s0, [[11, 22]])
    np.testing.assert_array_equal(s1, [[33, 44]])
    np.testing.assert_array_equal(w0, [[1, 2], [10, 20]])
    np.testing.assert_array_equal(w1, [[3, 4], [30, 40]])
    assert (r0[0, 0], r1[0, 0]) == (0, 1)


def test_collective_permute_moves_along_the_pairs():
    def k(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=x)
        ncc.collective_permute(srcs=[x], dsts=[out], source_target_pairs=[(0, 1), (1, 2), (2, 0)])
        return out
    xs = [np.full((1, 2), float(r), np.float32) for r in range(3)]
    outs = _run(k, xs)
    assert [o[0, 0] for o in outs] == [2.0, 0.0, 1.0]


def test_collective_rules():
    with pytest.raises(NkiRuleError, match="exactly one subgroup") as err:
        t = nl.ndarray((1, 1), nl.float32)
        ncc.all_reduce(srcs=[t], dsts=[t], replica_group=ncc.ReplicaGroup([[1, 2]]), op=nl.add)
    assert err.value.rule == "collective"
    with pytest.raises(NkiRuleError, match="mixes HBM and SBUF"):
        ncc.all_reduce(srcs=[nl.ndarray((1, 1), nl.float32)],
                       dsts=[nl.ndarray((1, 1), nl.float32, buffer=nl.shared_hbm)], replica_group=None, op=nl.add)
    with pytest.raises(NkiRuleError, match="outside the emulated subset"):
        ncc.all_gather_v([], [], None, None)
