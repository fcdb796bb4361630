"""nl: constants, allocation helpers, loops, SPMD queries and the convenience ops."""
from __future__ import annotations

import numpy as np
import pytest

from emu_helpers import last_record, tile, val
from qwen35_neuron.kernels.nki_emulator import NkiRuleError, isa as nisa, language as nl


def test_tile_size_constants():
    ts = nl.tile_size
    assert (ts.pmax, ts.psum_fmax, ts.psum_bank_fmax, ts.gemm_stationary_fmax,
            ts.gemm_moving_fmax, ts.psum_num_banks) == (128, 512, 512, 128, 512, 8)
    assert ts.sbuf_fmax_bytes == 192 * 1024


def test_buffer_predicates_and_hbm_alias():
    assert nl.hbm is nl.private_hbm
    assert nl.is_hbm(nl.shared_hbm) and nl.is_on_chip(nl.psum) and nl.is_psum(nl.psum)
    assert nl.is_sbuf(nl.sbuf) and not nl.is_sbuf(nl.psum)


def test_fill_helpers(program):
    np.testing.assert_array_equal(val(nl.zeros((2, 3), nl.float32)), np.zeros((2, 3)))
    np.testing.assert_array_equal(val(nl.ones((2, 3), nl.bfloat16)), np.ones((2, 3)))
    np.testing.assert_array_equal(val(nl.full((2, 3), 2.5, nl.float32)), np.full((2, 3), 2.5))
    z = nl.zeros_like(tile(np.ones((4, 2)), ), dtype=nl.int32)
    assert z.dtype == nl.int32 and (z.numpy() == 0).all()
    assert np.isnan(nl.empty_like(z, dtype=nl.float32).numpy()).all()
    assert program.recorder.counts["Vector"] == 4  # on-chip fills are memsets


def test_identity_and_constant():
    eye = nl.shared_identity_matrix(4, dtype=nl.bfloat16)
    np.testing.assert_array_equal(val(eye), np.eye(4))
    const = nl.shared_constant(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert const.buffer is nl.shared_hbm and val(const)[1, 2] == 5.0


def test_ranges_and_fori_loop():
    assert list(nl.affine_range(3)) == [0, 1, 2]
    assert list(nl.sequential_range(1, 7, 2)) == [1, 3, 5]
    assert list(nl.static_range(2)) == [0, 1]
    seen = []
    nl.fori_loop(2, 5, seen.append)
    assert seen == [2, 3, 4]
    with nl.no_reorder():
        pass


def test_spmd_defaults_outside_a_grid():
    assert (nl.program_id(0), nl.num_programs(0), nl.program_ndim()) == (0, 1, 0)


def test_elementwise_convenience_ops(rng, program):
    x, y = rng.uniform(0.5, 2.0, (4, 6)), rng.uniform(0.5, 2.0, (4, 6))
    tx, ty = tile(x), tile(y)
    np.testing.assert_allclose(val(nl.exp(tx)), np.exp(x), rtol=1e-6)
    assert last_record(program).engine == "Scalar"
    np.testing.assert_allclose(val(nl.add(tx, ty)), x + y, rtol=1e-6)
    np.testing.assert_allclose(val(nl.divide(tx, ty)), x / y, rtol=1e-6)
    np.testing.assert_allclose(val(nl.multiply(tx, 3.0)), 3 * x, rtol=1e-6)
    np.testing.assert_allclose(val(nl.subtract(tx, tile(y[:, :1]))), x - y[:, :1], rtol=1e-6)
    np.testing.assert_allclose(val(nl.negative(tx)), -x, rtol=1e-6)
    assert nl.exp(tx, dtype=nl.bfloat16).dtype == nl.bfloat16
    np.testing.assert_allclose(val(nl.sum(tx, axis=1)).ravel(), x.sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(val(nl.max(tx, axis=1, keepdims=True)), x.max(axis=1, keepdims=True))
    with pytest.raises(NkiRuleError, match="shape-mismatch"):
        nl.add(tx, tile(np.ones((4, 5))))


def test_load_store_copy(program):
    hbm = tile(np.arange(8.0).reshape(2, 4), buffer=nl.shared_hbm)
    sb = nl.load(hbm)
    assert sb.buffer is nl.sbuf and last_record(program).engine == "DMA"
    c = nl.copy(sb, dtype=nl.bfloat16)
    assert c.dtype == nl.bfloat16 and last_record(program).op == "tensor_copy"
    out = nl.ndarray((2, 4), nl.float32, buffer=nl.shared_hbm)
    nl.store(out, c)
    np.testing.assert_array_equal(val(out), np.arange(8.0).reshape(2, 4))


def test_matmul_and_transpose(rng):
    x, y = rng.standard_normal((8, 16)), rng.standard_normal((16, 4))
    res = nl.matmul(tile(x), tile(y))
    assert res.buffer is nl.psum
    np.testing.assert_allclose(val(res), x @ y, rtol=1e-5, atol=1e-5)
    res_t = nl.matmul(tile(x.T.copy()), tile(y), transpose_x=True)
    np.testing.assert_allclose(val(res_t), x @ y, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(val(nl.transpose(tile(x))), x.astype(np.float32).T)


def test_ops_are_usable_as_isa_tokens_and_reduce_aliases():
    dst = nl.ndarray((2, 1), nl.float32)
    nisa.tensor_reduce(dst, nl.max, tile(np.array([[1.0, 3.0], [5.0, 4.0]])), axis=1)
    assert val(dst).ravel().tolist() == [3.0, 5.0]
    assert repr(nl.add) == "nl.add"


def test_every_operator_token_is_exported_by_nl():
    from qwen35_neuron.kernels.nki_emulator.operators import ALL_OPS
    missing = [name for name, op in ALL_OPS.items() if getattr(nl, name, None) is not op]
    assert missing == []


def test_nkiobject_dataclass_field_left_out_is_none():
    from dataclasses import dataclass

    @dataclass
    class Dims(nl.NKIObject):
        a: int
        b: int
        c: int = 7

    d = Dims(1, c=3)  # b left out, as nki-library's moe_tkg leaves out remainderIFused
    assert (d.a, d.b, d.c) == (1, None, 3)
    assert Dims(a=1, b=2).c == 7

    @dataclass
    class Section(nl.NKIObject):
        idx = None  # no annotation: not a dataclass field (nki-library's SectionParams)

    assert Section(idx=4).idx == 4
    assert nl.NKIObject(x=1).x == 1


def test_nc_version_is_ordered():
    from qwen35_neuron.kernels.nki_emulator import isa as nisa
    assert nisa.get_nc_version() >= nisa.nc_version.gen3 > nisa.nc_version.gen2


def test_nkiobject_dataclass_with_its_own_init_is_called_as_written():
    from dataclasses import dataclass

    @dataclass
    class Params(nl.NKIObject):
        x: int
        derived: int

        def __init__(self, x: int, scale: int = 2):
            self.x, self.derived = x, x * scale

    p = Params(3, scale=5)
    assert (p.x, p.derived) == (3, 15)
