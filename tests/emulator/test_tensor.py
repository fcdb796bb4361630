"""NkiTensor views: shared storage, partition-dim rules, bounds, reshape/permute/broadcast/ap."""
from __future__ import annotations

import numpy as np
import pytest

from emu_helpers import tile, val
from qwen35_neuron.kernels.nki_emulator import NkiRuleError, isa as nisa, language as nl


def test_slices_are_views_sharing_storage():
    t = tile(np.zeros((8, 6)))
    nisa.memset(t[nl.ds(0, 2), nl.ds(1, 3)], 7.0)
    want = np.zeros((8, 6))
    want[0:2, 1:4] = 7.0
    np.testing.assert_array_equal(val(t), want)


def test_int_index_keeps_partition_dim_on_chip_but_drops_on_hbm():
    sb = nl.ndarray((8, 4, 5), nl.float32)
    assert sb[3].shape == (1, 4, 5)
    assert sb[3, 2].shape == (1, 5)
    assert sb[:, 1, 2].shape == (8, 1)
    hbm = nl.ndarray((8, 4, 5), nl.float32, buffer=nl.shared_hbm)
    assert hbm[3].shape == (4, 5)
    assert hbm[3, 2, 1:3].shape == (2,)
    assert sb[..., 0].shape == (8, 4)
    assert sb[-1].start_partition() == 7


def test_index_errors():
    t = nl.ndarray((8, 4), nl.float32)
    with pytest.raises(NkiRuleError, match="out of bounds"):
        t[0:9]
    with pytest.raises(NkiRuleError, match="out of bounds"):
        t[:, 4]
    with pytest.raises(NkiRuleError, match="partition-stride"):
        t[0:8:2]
    with pytest.raises(NkiRuleError, match="index"):
        t[0, 0, 0]
    with pytest.raises(NkiRuleError, match="index"):
        t[nl.ds(6, 4)]
    with pytest.raises(TypeError):
        list(t)
    assert t[:, 0:4:2].shape == (8, 2)  # free-dim step is fine


def test_reshape_is_a_view_and_keeps_partitions():
    t = tile(np.arange(24.0).reshape(2, 12))
    r = t.reshape((2, 3, 4))
    nisa.memset(r[:, 1, :], -1.0)
    assert val(t)[0, 4:8].tolist() == [-1.0] * 4
    with pytest.raises(NkiRuleError, match="partition-view"):
        t.reshape((4, 6))
    with pytest.raises(NkiRuleError, match="reshape"):
        t[:, 0:12:2].reshape((2, 2, 3)).reshape((2, 6)).reshape((1, 12))
    hbm = nl.ndarray((4, 6), nl.float32, buffer=nl.shared_hbm)
    assert hbm.reshape((24,)).shape == (24,)
    assert t.reshape_dim(1, (3, -1)).shape == (2, 3, 4)
    assert t.reshape((2, 3, 4)).flatten_dims(1, 2).shape == (2, 12)


def test_permute_broadcast_expand_squeeze_select_slice():
    t = tile(np.arange(24.0).reshape(2, 3, 4))
    assert t.permute((0, 2, 1)).shape == (2, 4, 3)
    with pytest.raises(NkiRuleError, match="partition-view"):
        t.permute((1, 0, 2))
    col = tile(np.array([[1.0], [2.0]]))
    b = col.broadcast(1, 5)
    assert b.shape == (2, 5) and val(b)[1].tolist() == [2.0] * 5
    with pytest.raises(NkiRuleError, match="partition-view"):
        tile(np.ones((1, 4))).broadcast(0, 8)
    with pytest.raises(NkiRuleError, match="broadcast"):
        t.broadcast(1, 5)
    assert col.broadcast_to((2, 7)).shape == (2, 7)
    assert t.expand_dim(1).shape == (2, 1, 3, 4)
    assert t.expand_dim(1).squeeze_dim(1).shape == (2, 3, 4)
    assert t.select(1, 2).shape == (2, 4)
    assert val(t.slice(2, 1, 3))[0, 0].tolist() == [1.0, 2.0]


def test_write_to_broadcast_view_is_rejected():
    col = tile(np.ones((2, 1)))
    with pytest.raises(NkiRuleError, match="destination"):
        nisa.memset(col.broadcast(1, 4), 0.0)


def test_view_dtype_and_ap():
    t = tile(np.arange(32.0).reshape(4, 8))
    assert t.view(nl.int32).shape == (4, 8)
    sub = t.ap([[8, 4], [2, 4]], offset=1)  # every other element starting at column 1
    np.testing.assert_array_equal(val(sub), np.arange(32.0).reshape(4, 8)[:, 1::2])
    with pytest.raises(NkiRuleError, match="ap"):
        t.ap([[4, 4], [1, 4]])  # partition stride must be the row length
    hbm = tile(np.arange(12.0).reshape(3, 4), buffer=nl.shared_hbm)
    row = hbm.ap([[1, 4]], scalar_offset=2, indirect_dim=0)
    np.testing.assert_array_equal(val(row), [8.0, 9.0, 10.0, 11.0])
    outside = hbm.ap([[4, 4]])  # a view is only a pattern: building it touches nothing ...
    with pytest.raises(NkiRuleError, match="outside storage"):
        nisa.dma_copy(nl.ndarray((1, 4), nl.float32), outside)  # ... an instruction using it fails


def test_setitem_copies():
    t = nl.ndarray((2, 3), nl.float32)
    t[...] = tile(np.full((2, 3), 4.0))
    np.testing.assert_array_equal(val(t), np.full((2, 3), 4.0))
    t[:, 0] = 1.0
    assert val(t)[:, 0].tolist() == [1.0, 1.0]
    hbm = nl.ndarray((2, 3), nl.float32, buffer=nl.shared_hbm)
    hbm[...] = t
    np.testing.assert_array_equal(val(hbm), val(t))


def test_an_empty_view_may_be_built_but_not_used():
    """cross_entropy slices zero positions on an idle core and then never uses the view."""
    t = nl.ndarray((4, 4), nl.float32, buffer=nl.shared_hbm)
    empty = t[nl.ds(0, 0)]
    assert empty.shape == (0, 4)
    with pytest.raises(NkiRuleError, match="empty view"):
        nisa.dma_copy(nl.ndarray((1, 4), nl.float32), empty)
    with pytest.raises(NkiRuleError, match="out of bounds"):
        t[5:6]
