"""Allocation limits, budgets, lifetime tracking and uninitialised fill."""
from __future__ import annotations

import numpy as np
import pytest

from emu_helpers import tile
from qwen35_neuron.kernels.nki_emulator import NkiRuleError, isa as nisa, jit as nki_jit, language as nl
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


def test_psum_banks_count_tensors_live_at_once(program):
    """Eight PSUM tensors used together fit; a ninth used while they are all still needed does not."""
    tiles = [nl.ndarray((128, 4), nl.float32, buffer=nl.psum) for _ in range(9)]
    out = nl.ndarray((128, 4), nl.float32)
    for t in tiles[:8]:
        nisa.memset(t, 0.0)
    for t in tiles[:8]:
        nisa.tensor_copy(out, t)
    program.memory.check()
    assert program.memory.peak_psum_banks == 8
    nisa.memset(tiles[8], 0.0)
    for t in tiles:  # every tile is read after the ninth was written: nine live at once
        nisa.tensor_copy(out, t)
    with pytest.raises(NkiRuleError, match=r"psum-capacity.*9 PSUM banks live at once"):
        program.memory.check()
    program.memory.footprints.clear()  # the fixture's end-of-program check would fail again


def test_psum_tensors_used_one_after_another_fit(program):
    """Nine (or ninety) PSUM tensors that are each dead before the next is used need one bank:
    live ranges, not Python object lifetime (the list keeps every object alive)."""
    kept = []
    out = nl.ndarray((128, 4), nl.float32)
    for _ in range(90):
        t = nl.ndarray((128, 4), nl.float32, buffer=nl.psum)
        nisa.memset(t, 1.0)
        nisa.tensor_copy(out, t)
        kept.append(t)
    program.memory.check()
    assert program.memory.peak_psum_banks == 1


def test_sbuf_budget_per_partition(program):
    half = SBUF_BYTES_PER_PARTITION // 2 // 4
    a = nl.ndarray((128, half), nl.float32)
    b = nl.ndarray((1, half), nl.float32)  # partitions do not matter: bytes per partition do
    nisa.memset(a, 0.0)
    nisa.memset(b, 0.0)
    nisa.tensor_copy(b[:, 0:1], a[0:1, 0:1])  # both live here
    program.memory.check()
    assert program.memory.peak_sbuf == SBUF_BYTES_PER_PARTITION
    c = nl.ndarray((1, 1), nl.float32)
    nisa.tensor_tensor(c, a[0:1, 0:1], b[0:1, 0:1], op=nl.add)  # a, b and c live together
    with pytest.raises(NkiRuleError, match="sbuf-capacity"):
        program.memory.check()
    program.memory.footprints.clear()


def test_kernel_over_budget_fails_at_launch():
    @nki_jit
    def too_big(x):
        a = nl.ndarray((128, SBUF_BYTES_PER_PARTITION // 4), nl.float32)
        b = nl.ndarray((128, 4), nl.float32)
        nisa.memset(a, 0.0)
        nisa.memset(b, 0.0)
        nisa.tensor_copy(b, a[:, 0:4])
        return x
    with pytest.raises(NkiRuleError, match="sbuf-capacity"):
        too_big(np.zeros((2, 2), np.float32))


def test_two_sbuf_tensors_at_one_address_share_storage_and_budget(program):
    """Two 128 KiB tensors placed at one address, used in turn, fit (the bytes count once),
    and they alias: a write through one is what the other reads."""
    cols = 128 * 1024 // 4
    first = nl.ndarray((128, cols), nl.float32, address=(0, 0))
    second = nl.ndarray((128, cols), nl.float32, address=(0, 0))
    nisa.memset(first, 1.0)
    nisa.memset(second, 2.0)
    assert (first.numpy() == 2.0).all()  # the second write landed in the first's bytes
    loose = nl.ndarray((128, 16 * 1024), nl.float32)  # 64 KiB: 128 + 64 fit 192 KiB
    nisa.tensor_copy(loose[:, 0:cols // 8], first[:, 0:cols // 8])
    program.memory.check()
    assert program.memory.peak_sbuf == 192 * 1024


def test_psum_tensors_at_one_bank_alias(program):
    """Two PSUM tensors at one bank address share storage, so using the first after the second
    was written reads the second's values: the aliasing bug shows."""
    a = nl.ndarray((128, 4), nl.float32, buffer=nl.psum, address=(0, 2 * 2048))
    b = nl.ndarray((128, 4), nl.float32, buffer=nl.psum, address=(0, 2 * 2048))
    nisa.memset(a, 1.0)
    nisa.memset(b, 5.0)
    assert (a.numpy() == 5.0).all()
    c = nl.ndarray((128, 4), nl.float32, buffer=nl.psum, address=(0, 3 * 2048))
    nisa.memset(c, 7.0)
    nisa.tensor_copy(nl.ndarray((128, 4), nl.float32), a)  # a (and its bank) live across c's write
    assert (a.numpy() == 5.0).all() and (c.numpy() == 7.0).all()
    program.memory.check()
    assert program.memory.peak_psum_banks == 2


def test_address_out_of_range_is_refused():
    with pytest.raises(NkiRuleError, match="address"):
        nl.ndarray((64, 4), nl.float32, address=(96, 0))
    with pytest.raises(NkiRuleError, match="address"):
        nl.ndarray((128, 512), nl.float32, buffer=nl.psum, address=(0, 8 * 2048))


def test_string_buffer_and_bad_dtype_rejected():
    with pytest.raises(NkiRuleError, match="buffer"):
        nl.ndarray((2, 2), nl.float32, buffer="sbuf")
    with pytest.raises(NkiRuleError, match="dtype"):
        nl.ndarray((2, 2), np.float64)
    with pytest.raises(NkiRuleError, match="shape"):
        nl.ndarray((0, 2), nl.float32)


def test_accumulate_none_starts_fresh_in_each_tensor_placed_at_one_bank(program):
    """accumulate=None: the first matmul into a tensor overwrites, later ones add (NKI docs). The
    compiler decides that per tensor, so a second tensor placed at the same bank as an earlier,
    finished one starts fresh (attention_cte's per-group PSUM tiles at one bank rely on it)."""
    ones = nl.ones((4, 4), nl.float32)
    first = nl.ndarray((4, 4), nl.float32, buffer=nl.psum, address=(0, 2048))
    second = nl.ndarray((4, 4), nl.float32, buffer=nl.psum, address=(0, 2048))
    nisa.nc_matmul(first, ones, ones)
    nisa.nc_matmul(first, ones, ones)  # adds: 8
    assert (first.numpy() == 8.0).all()
    nisa.nc_matmul(second, ones, ones)  # a new tensor: overwrites the shared bytes with 4
    assert (second.numpy() == 4.0).all() and (first.numpy() == 4.0).all()
