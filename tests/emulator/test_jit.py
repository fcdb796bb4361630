"""nki.jit / nki.simulate / run_kernel: argument conversion, outputs, LNC=2 grids."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch

# The emulator itself, even on a machine where the real `nki` is installed.
from qwen35_neuron.kernels import nki_emulator as nki
from qwen35_neuron.kernels.nki_emulator import isa as nisa
from qwen35_neuron.kernels.nki_emulator import language as nl
from qwen35_neuron.kernels.nki_emulator import NkiRuleError, run_kernel


@nki.jit
def scale_kernel(x, factor):
    out = nl.ndarray(x.shape, x.dtype, buffer=nl.shared_hbm)
    t = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=x)
    nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=factor)
    nisa.dma_copy(dst=out, src=t)
    return out


@nki.jit(mode="simulation")
def split_rows_kernel(x):
    """Each program handles half the rows; both write one shared output."""
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.shared_hbm)
    ids = nl.ndarray((1, 3), nl.int32, buffer=nl.shared_hbm)
    rows = x.shape[0] // nl.num_programs(0)
    r0 = nl.program_id(0) * rows
    t = nl.ndarray((rows, x.shape[1]), nl.float32)
    nisa.dma_copy(dst=t, src=x[r0:r0 + rows, :])
    nisa.tensor_scalar(dst=t, data=t, op0=nl.add, operand0=float(nl.program_id(0)))
    nisa.dma_copy(dst=out[r0:r0 + rows, :], src=t)
    meta = nl.ndarray((1, 3), nl.int32)
    nisa.iota(meta, [[0, 3]], offset=0)
    nisa.tensor_scalar(meta, meta, nl.add, nl.program_ndim() * 100 + nl.num_programs(0) * 10)
    nisa.dma_copy(dst=ids, src=meta)
    return out, ids


def test_plain_call_numpy_in_numpy_out():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = scale_kernel(x, 2.0)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, 2 * x)
    assert scale_kernel.last_run.counts == {"Tensor": 0, "Vector": 1, "Scalar": 0, "GpSimd": 0, "DMA": 2}


def test_torch_in_torch_out_bf16():
    x = torch.arange(8, dtype=torch.bfloat16).reshape(2, 4)
    out = scale_kernel(x, 0.5)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bfloat16
    torch.testing.assert_close(out, x * 0.5)


def test_simulate_and_jit_forms():
    x = np.ones((2, 2), np.float32)
    np.testing.assert_array_equal(nki.simulate(scale_kernel)(x, 3.0), 3 * x)
    np.testing.assert_array_equal(nki.jit()(scale_kernel.fn)(x, 3.0), 3 * x)
    np.testing.assert_array_equal(nki.simulate(scale_kernel.fn)(x, 3.0), 3 * x)


def test_lnc2_shares_outputs_and_sets_program_ids():
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    out, ids = split_rows_kernel[2](x)
    want = x.copy()
    want[2:] += 1.0
    np.testing.assert_array_equal(out, want)
    assert ids.tolist() == [[120, 120, 120]]  # program_ndim 1, num_programs 2
    out1, ids1 = split_rows_kernel(x)
    np.testing.assert_array_equal(out1, x)
    assert ids1.tolist() == [[10, 10, 10]]  # no grid: ndim 0, one program


def test_run_kernel_returns_records_and_cost():
    x = np.ones((4, 4), np.float32)
    (out, _), run = run_kernel(split_rows_kernel, x, lnc=2)
    assert len(run.recorders) == 2 and run.counts["DMA"] == 6
    assert run.dma_bytes == 2 * (2 * 32 + 12)
    assert "modelled" in run.cost.format()


def test_kernel_writes_to_input_are_visible():
    @nki.jit
    def zero_first_row(state):
        z = nl.zeros((1, state.shape[1]), state.dtype)
        nisa.dma_copy(dst=state[0:1, :], src=z)
        return state
    s = np.ones((2, 3), np.float32)
    out = zero_first_row(s)
    assert s[0].tolist() == [0, 0, 0] and out[1].tolist() == [1, 1, 1]


def test_output_rules():
    @nki.jit
    def returns_sbuf(x):
        t = nl.ndarray(x.shape, x.dtype)
        nisa.dma_copy(t, x)
        return t
    with pytest.raises(NkiRuleError, match="kernel-output"):
        returns_sbuf(np.ones((2, 2), np.float32))

    @nki.jit
    def uneven(x):
        if nl.program_id(0) == 1:
            nl.ndarray((1, 1), nl.float32, buffer=nl.shared_hbm)
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(out, x)
        return out
    with pytest.raises(NkiRuleError, match="lnc-outputs"):
        uneven[2](np.ones((2, 2), np.float32))
    with pytest.raises(NkiRuleError, match="dtype"):
        scale_kernel(np.ones((2, 2)), 1.0)  # float64 is not an NKI dtype
    with pytest.raises(NkiRuleError, match="spmd"):
        scale_kernel[2, 2]


def test_bf16_numpy_arguments():
    x = np.arange(4, dtype=np.float32).reshape(2, 2).astype(ml_dtypes.bfloat16)
    out = scale_kernel(x, 2.0)
    assert out.dtype == ml_dtypes.bfloat16 and out.astype(np.float32).tolist() == [[0, 2], [4, 6]]


def test_a_jitted_kernel_called_inside_a_kernel_runs_inline():
    """nki-library's transformer_tkg calls its @nki.jit attention_block_tkg from inside itself."""
    @nki.jit
    def inner(t):
        nisa.tensor_scalar(dst=t, data=t, op0=nl.add, operand0=1.0)
        return t  # an SBUF tile: fine for a sub-call, not for a launch

    @nki.jit
    def outer(x):
        out = nl.ndarray(x.shape, x.dtype, buffer=nl.shared_hbm)
        t = nl.ndarray(x.shape, x.dtype)
        nisa.dma_copy(dst=t, src=x)
        nisa.dma_copy(dst=out, src=inner(t))
        return out

    np.testing.assert_array_equal(outer(np.zeros((2, 2), np.float32)), np.ones((2, 2)))
    assert outer.last_run.counts["Vector"] == 1
