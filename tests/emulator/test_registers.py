"""Engine registers: register_alloc/move/load/store drive dynamic loops and offsets
(NKI docs, nki.isa.register_alloc and nki.isa.VirtualRegister)."""
from __future__ import annotations

import numpy as np
import pytest

from emu_helpers import tile, val
from qwen35_neuron.kernels.nki_emulator import NkiRuleError, isa as nisa, language as nl, run_kernel


def test_register_load_sets_a_dynamic_trip_count():
    def k(n_hbm):
        out = nl.ndarray((1, 1), nl.int32, buffer=nl.shared_hbm)
        n_sb = nl.ndarray((1, 1), nl.int32)
        nisa.dma_copy(dst=n_sb, src=n_hbm)
        reg = nisa.register_alloc()
        nisa.register_load(reg, n_sb)
        acc = nl.zeros((1, 1), nl.int32)
        for _ in nl.dynamic_range(0, reg, 1):
            nisa.tensor_scalar(acc, acc, nl.add, 3)
        nisa.dma_copy(dst=out, src=acc)
        return out
    out, _ = run_kernel(k, np.array([[5]], np.int32))
    assert out[0, 0] == 15


def test_register_move_store_and_while():
    reg = nisa.register_alloc(3)
    copy = nisa.register_alloc()
    nisa.register_move(copy, reg)
    steps = 0
    while copy:
        steps += 1
        nisa.register_move(copy, int(copy) - 1)
    assert steps == 3
    dst = nl.ndarray((1, 1), nl.int32)
    nisa.register_store(dst, reg)
    assert dst.numpy()[0, 0] == 3


def test_register_as_scalar_offset():
    hbm = tile(np.arange(12.0).reshape(3, 4), buffer=nl.shared_hbm)
    out = nl.ndarray((1, 4), nl.float32)
    nisa.dma_copy(dst=out, src=hbm.ap([[4, 1], [1, 4]], 0, scalar_offset=nisa.register_alloc(2), indirect_dim=0))
    np.testing.assert_array_equal(val(out), [[8, 9, 10, 11]])


def test_register_rules():
    with pytest.raises(NkiRuleError, match="never written") as err:
        bool(nisa.register_alloc())
    assert err.value.rule == "register"
    with pytest.raises(NkiRuleError, match="exactly one element"):
        nisa.register_load(nisa.register_alloc(), tile(np.ones((1, 2)), nl.int32))
