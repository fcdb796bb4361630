"""Small end-to-end kernels written against the real NKI API, run through `import nki`."""
from __future__ import annotations

import ml_dtypes
import numpy as np

# The emulator itself, even on a machine where the real `nki` is installed.
from qwen35_neuron.kernels import nki_emulator as nki
from qwen35_neuron.kernels.nki_emulator import isa as nisa
from qwen35_neuron.kernels.nki_emulator import language as nl
from qwen35_neuron.kernels.nki_emulator import run_kernel


@nki.jit
def tiled_matmul(lhsT, rhs):
    """The NKI docs' accumulate=(i > 0) K-loop."""
    K, M = lhsT.shape
    _, N = rhs.shape
    result = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.shared_hbm)
    res_psum = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.psum)
    for i in nl.affine_range(K // 128):
        lhs_sb = nl.ndarray((128, M), dtype=lhsT.dtype, buffer=nl.sbuf)
        rhs_sb = nl.ndarray((128, N), dtype=rhs.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=lhs_sb, src=lhsT[i * 128:(i + 1) * 128, :])
        nisa.dma_copy(dst=rhs_sb, src=rhs[i * 128:(i + 1) * 128, :])
        nisa.nc_matmul(dst=res_psum, stationary=lhs_sb, moving=rhs_sb, accumulate=(i > 0))
    res_sb = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=res_sb, src=res_psum)
    nisa.dma_copy(dst=result, src=res_sb)
    return result


@nki.jit
def rmsnorm(x, w, eps):
    """out = x / sqrt(mean(x^2) + eps) * w, rows on partitions."""
    P, D = x.shape
    out = nl.ndarray((P, D), dtype=x.dtype, buffer=nl.shared_hbm)
    xt = nl.ndarray((P, D), nl.float32)
    nisa.dma_copy(dst=xt, src=x)
    wt = nl.ndarray((P, D), nl.float32)
    nisa.dma_copy(dst=wt, src=w.broadcast_to((P, D)))  # HBM stride-0 read to every partition
    sq = nl.ndarray((P, D), nl.float32)
    ss = nl.ndarray((P, 1), nl.float32)
    nisa.activation(dst=sq, op=nl.square, data=xt, reduce_op=nl.add, reduce_res=ss,
                    reduce_cmd=nisa.reduce_cmd.reset_reduce)
    inv = nl.ndarray((P, 1), nl.float32)
    nisa.activation(dst=inv, op=nl.rsqrt, data=ss, scale=1.0 / D, bias=eps)
    y = nl.ndarray((P, D), x.dtype)
    nisa.scalar_tensor_tensor(dst=y, data=xt, op0=nl.multiply, operand0=inv, op1=nl.multiply, operand1=wt)
    nisa.dma_copy(dst=out, src=y)
    return out


@nki.jit
def softmax_rows(s):
    P, F = s.shape
    out = nl.ndarray((P, F), nl.float32, buffer=nl.shared_hbm)
    st = nl.ndarray((P, F), nl.float32)
    nisa.dma_copy(st, s)
    neg_max = nl.ndarray((P, 1), nl.float32)
    nisa.tensor_reduce(neg_max, nl.maximum, st, axis=1, negate=True)
    e = nl.ndarray((P, F), nl.float32)
    total = nl.ndarray((P, 1), nl.float32)
    nisa.activation_reduce(e, nl.exp, st, reduce_op=nl.add, reduce_res=total, bias=neg_max)
    inv = nl.ndarray((P, 1), nl.float32)
    nisa.reciprocal(inv, total)
    nisa.tensor_scalar(e, e, nl.multiply, inv)
    nisa.dma_copy(out, e)
    return out


def test_tiled_matmul_bf16(rng):
    a = rng.standard_normal((256, 64)).astype(ml_dtypes.bfloat16)
    b = rng.standard_normal((256, 96)).astype(ml_dtypes.bfloat16)
    out, run = run_kernel(tiled_matmul, a, b)
    want = a.astype(np.float64).T @ b.astype(np.float64)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4)
    assert run.counts == {"Tensor": 2, "Vector": 1, "Scalar": 0, "GpSimd": 0, "DMA": 5}
    assert run.cost.flops == 2 * 256 * 64 * 96
    assert run.peak_psum_banks == [1]


def test_rmsnorm_bf16_output(rng):
    x = rng.standard_normal((32, 48)).astype(np.float32)
    w = rng.standard_normal((1, 48)).astype(np.float32)
    out = rmsnorm(x.astype(ml_dtypes.bfloat16), w, 1e-6)
    xb = x.astype(ml_dtypes.bfloat16).astype(np.float64)
    want = xb / np.sqrt((xb ** 2).mean(axis=1, keepdims=True) + 1e-6) * w
    np.testing.assert_allclose(out.astype(np.float64), want, rtol=1e-2, atol=1e-2)
    assert out.dtype == ml_dtypes.bfloat16


def test_softmax_rows_lnc_independent(rng):
    s = (3 * rng.standard_normal((16, 40))).astype(np.float32)
    out, run = run_kernel(softmax_rows, s)
    e = np.exp(s - s.max(axis=1, keepdims=True))
    np.testing.assert_allclose(out, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
    assert run.cost.modelled_ns > run.cost.busy_bound_ns > 0
