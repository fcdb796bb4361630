"""LNC programs run concurrently: nisa.sendrecv exchanges SBUF tiles between the two cores and
nisa.core_barrier orders shared-HBM writes (NKI docs, nki.isa.sendrecv / nki.isa.core_barrier)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from qwen35_neuron.kernels.nki_emulator import NkiRuleError, isa as nisa, language as nl, run_kernel


def _swap_kernel(x):
    """Each program loads its half, swaps it with the other core, stores what it received."""
    out = nl.ndarray(x.shape, x.dtype, buffer=nl.shared_hbm)
    me = nl.program_id(0)
    rows = x.shape[0] // 2
    mine = nl.ndarray((rows, x.shape[1]), x.dtype)
    nisa.dma_copy(dst=mine, src=x[me * rows:(me + 1) * rows, :])
    theirs = nl.ndarray((rows, x.shape[1]), x.dtype)
    nisa.sendrecv(src=mine, dst=theirs, send_to_rank=1 - me, recv_from_rank=1 - me, pipe_id=0)
    nisa.dma_copy(dst=out[me * rows:(me + 1) * rows, :], src=theirs)
    return out


def test_sendrecv_swaps_tiles_between_the_two_programs():
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    out, run = run_kernel(_swap_kernel, x, lnc=2)
    np.testing.assert_array_equal(out, np.concatenate([x[2:], x[:2]]))
    assert [r.op for r in run.recorders[0].records].count("sendrecv") == 1


def _reduce_kernel(x):
    """All-reduce by two exchanges on two pipes, the second only after the first (program order)."""
    out = nl.ndarray((1, x.shape[1]), nl.float32, buffer=nl.shared_hbm)
    me = nl.program_id(0)
    acc = nl.ndarray((1, x.shape[1]), nl.float32)
    nisa.dma_copy(dst=acc, src=x[me:me + 1, :])
    for pipe in (0, 1):
        other = nl.ndarray((1, x.shape[1]), nl.float32)
        nisa.sendrecv(src=acc, dst=other, send_to_rank=1 - me, recv_from_rank=1 - me, pipe_id=pipe)
        nisa.tensor_tensor(dst=acc, data1=acc, data2=other, op=nl.add)
    if me == 0:
        nisa.dma_copy(dst=out, src=acc)
    return out


def test_sendrecv_pairs_calls_per_pipe_in_program_order():
    x = np.array([[1.0, 2.0], [10.0, 20.0]], np.float32)
    out, _ = run_kernel(_reduce_kernel, x, lnc=2)
    np.testing.assert_array_equal(out, [[22.0, 44.0]])  # (1+10)*2, (2+20)*2


def _barrier_kernel(x):
    """Program 1 writes shared HBM; after the barrier program 0 reads it."""
    scratch = nl.ndarray(x.shape, x.dtype, buffer=nl.shared_hbm, name="scratch")
    out = nl.ndarray(x.shape, x.dtype, buffer=nl.shared_hbm, name="out")
    t = nl.ndarray(x.shape, x.dtype)
    if nl.program_id(0) == 1:
        threading.Event().wait(0.05)  # program 1 is slow: without the barrier program 0 reads NaN
        nisa.dma_copy(dst=t, src=x)
        nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=3.0)
        nisa.dma_copy(dst=scratch, src=t)
    nisa.core_barrier(data=scratch, cores=(0, 1))
    if nl.program_id(0) == 0:
        nisa.dma_copy(dst=t, src=scratch)
        nisa.dma_copy(dst=out, src=t)
    return out


def test_core_barrier_makes_the_other_cores_hbm_writes_visible():
    x = np.ones((2, 3), np.float32)
    out, _ = run_kernel(_barrier_kernel, x, lnc=2)
    np.testing.assert_array_equal(out, 3 * x)


def test_programs_run_concurrently_in_separate_contexts():
    seen = {}

    def k(x):
        seen[nl.program_id(0)] = threading.current_thread().name
        return None

    run_kernel(k, np.ones(1, np.float32), lnc=2)
    assert seen[0] != seen[1]


def test_a_missing_partner_is_an_error_not_a_hang():
    def k(x):
        t = nl.ndarray((1, 1), nl.float32)
        nisa.memset(t, 0.0)
        if nl.program_id(0) == 0:
            nisa.sendrecv(src=t, dst=t, send_to_rank=1, recv_from_rank=1, pipe_id=0)
    with pytest.raises(NkiRuleError, match="ended without reaching it") as err:
        run_kernel(k, np.ones(1, np.float32), lnc=2)
    assert err.value.rule == "lnc-sync"


def test_a_deadlock_is_an_error_not_a_hang():
    def k(x):
        t = nl.ndarray((1, 1), nl.float32)
        nisa.memset(t, 0.0)
        if nl.program_id(0) == 0:
            nisa.sendrecv(src=t, dst=t, send_to_rank=1, recv_from_rank=1, pipe_id=0)
        else:
            nisa.sendrecv(src=t, dst=t, send_to_rank=0, recv_from_rank=0, pipe_id=1)
    with pytest.raises(NkiRuleError, match="deadlock"):
        run_kernel(k, np.ones(1, np.float32), lnc=2)


def test_a_failure_in_one_program_stops_the_other_and_is_raised():
    def k(x):
        t = nl.ndarray((1, 1), nl.float32)
        nisa.memset(t, 0.0)
        if nl.program_id(0) == 1:
            nl.ndarray((256, 1), nl.float32)  # partition dim > 128
        nisa.sendrecv(src=t, dst=t, send_to_rank=1 - nl.program_id(0),
                      recv_from_rank=1 - nl.program_id(0), pipe_id=0)
    with pytest.raises(NkiRuleError, match="partition dim 256") as err:
        run_kernel(k, np.ones(1, np.float32), lnc=2)
    assert "in program 1 of 2" in "".join(getattr(err.value, "__notes__", []))


def test_sendrecv_rules():
    t = nl.ndarray((4, 300), nl.float32)
    with pytest.raises(NkiRuleError, match="at most 1024 bytes"):
        nisa.sendrecv(src=t, dst=t, send_to_rank=0, recv_from_rank=0, pipe_id=0,
                      dma_engine=nisa.dma_engine.gpsimd_dma)
    with pytest.raises(NkiRuleError, match="program id in 0..0"):
        nisa.sendrecv(src=t, dst=t, send_to_rank=1, recv_from_rank=0, pipe_id=0)
    with pytest.raises(NkiRuleError, match="allowed: sbuf"):
        psum = nl.ndarray((4, 4), nl.float32, buffer=nl.psum)
        nisa.sendrecv(src=psum, dst=psum, send_to_rank=0, recv_from_rank=0, pipe_id=0)
