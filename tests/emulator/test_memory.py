"""Allocation limits, budgets, lifetime tracking and uninitialised fill."""
from __future__ import annotations

import gc

import numpy as np
import pytest

from emu_helpers import tile
from qwen35_neuron.kernels.nki_emulator import NkiRuleError, isa as nisa, language as nl
from qwen35_neuron.kernels.nki_emulator.memory import SBUF_BYTES_PER_PARTITION


def test_fresh_buffers_show_uninitialised_reads():
    assert np.isnan(nl.ndarray((2, 3), nl.float32).numpy()).all()
    assert np.isnan(nl.ndarray((2, 3), nl.bfloat16).numpy().astype(np.float32)).all()
    assert (nl.ndarray((2, 3), nl.int32).numpy() == np.iinfo(np.int32).min).all()
    assert (nl.ndarray((2, 3), nl.uint8).numpy() == 255).all()
    out = nl.ndarray((2, 3), nl.float32)
    nisa.tensor_tensor(out, nl.ndarray((2, 3), nl.float32), tile(np.ones((2, 3))), op=nl.add)
    assert np.isnan(out.numpy()).all()  # NaN propagates like on the real simulator


def test_partition_dim_limit():
    with pytest.raises(NkiRuleError, match=r"partition dim 256 > 128 \(nl.tile_size.pmax\)"):
        nl.ndarray((256, 4), nl.float32)
    nl.ndarray((256, 4), nl.float32, buffer=nl.shared_hbm)  # HBM has no partition limit


def test_psum_tile_must_fit_one_bank():
    nl.ndarray((128, 512), nl.float32, buffer=nl.psum)
    with pytest.raises(NkiRuleError, match="psum-tile-size"):
        nl.ndarray((128, 513), nl.float32, buffer=nl.psum)
    with pytest.raises(NkiRuleError, match="psum-address"):
        nl.ndarray((128, 16), nl.float32, buffer=nl.psum, address=(0, 1024))


def test_psum_eight_banks_live(program):
    tiles = []
    for _ in range(8):
        t = nl.ndarray((128, 4), nl.float32, buffer=nl.psum)
        nisa.memset(t, 0.0)
        tiles.append(t)
    assert program.memory.psum_banks == 8
    ninth = nl.ndarray((128, 4), nl.float32, buffer=nl.psum)  # allocating alone does not count
    with pytest.raises(NkiRuleError, match="psum-capacity"):
        nisa.memset(ninth, 0.0)
    del t  # the loop variable still referenced the last tile
    tiles.pop()
    gc.collect()
    nisa.memset(ninth, 0.0)  # a bank was freed


def test_sbuf_budget_per_partition(program):
    half = SBUF_BYTES_PER_PARTITION // 2 // 4
    a = nl.ndarray((128, half), nl.float32)
    nisa.memset(a, 0.0)
    b = nl.ndarray((1, half), nl.float32)  # partitions do not matter: bytes per partition do
    nisa.memset(b, 0.0)
    assert program.memory.sbuf_used == SBUF_BYTES_PER_PARTITION
    c = nl.ndarray((128, 1), nl.float32)
    with pytest.raises(NkiRuleError, match="sbuf-capacity"):
        nisa.memset(c, 0.0)


def test_allocation_in_a_loop_is_freed(program):
    big = SBUF_BYTES_PER_PARTITION // 4 // 3  # three of these fit, four do not
    for _ in range(10):
        t = nl.ndarray((128, big), nl.float32)
        nisa.memset(t, 1.0)
        u = nl.ndarray((128, big), nl.float32)
        nisa.tensor_copy(u, t)
    assert program.memory.peak_sbuf <= 3 * big * 4


def test_string_buffer_and_bad_dtype_rejected():
    with pytest.raises(NkiRuleError, match="buffer"):
        nl.ndarray((2, 2), nl.float32, buffer="sbuf")
    with pytest.raises(NkiRuleError, match="dtype"):
        nl.ndarray((2, 2), np.float64)
    with pytest.raises(NkiRuleError, match="shape"):
        nl.ndarray((0, 2), nl.float32)
