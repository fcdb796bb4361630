"""The modelled trn2 cost: per-instruction prices, the dependency schedule, roofline."""
from __future__ import annotations

import numpy as np
import pytest

from qwen35_neuron.kernels.nki_emulator import cost_model as cm
from qwen35_neuron.kernels.nki_emulator.counters import InstructionRecord, Recorder


def rec(engine, free=512, seq=0, reads=(), writes=(), **kw):
    return InstructionRecord(seq=seq, program=0, engine=engine, op="x", partitions=128,
                             free_elems=free, bytes=kw.pop("bytes", 0), reads=reads, writes=writes, **kw)


def test_tensor_engine_prices():
    assert cm.instruction_ns(rec("Tensor", 512)) == pytest.approx(512 / 2.4)
    assert cm.instruction_ns(rec("Tensor", 8)) == pytest.approx(64 / 2.4)  # min initiation
    assert cm.instruction_ns(rec("Tensor", 512, fp32_matmul=True)) == pytest.approx(4 * 512 / 2.4)
    assert cm.instruction_ns(rec("Tensor", 512, fp32_matmul=True, onezero=True)) == pytest.approx(2 * 512 / 2.4)


def test_vector_scalar_gpsimd_prices():
    assert cm.instruction_ns(rec("Vector", 1000)) == pytest.approx((100 + 1000) / 0.96)
    assert cm.instruction_ns(rec("Vector", 1000, n_inputs=2)) == pytest.approx((100 + 2000) / 0.96)
    assert cm.instruction_ns(rec("Vector", 1000, perf_factor=4)) == pytest.approx((100 + 250) / 0.96)
    assert cm.instruction_ns(rec("Scalar", 1)) == pytest.approx((224 + 64) / 1.2)
    assert cm.instruction_ns(rec("GpSimd", 256)) == pytest.approx((100 + 256) / 1.2)


def test_dma_price_charges_small_descriptors():
    big = rec("DMA", bytes=65536, descriptors=128)
    assert cm.instruction_ns(big) == pytest.approx(65536 / 368.0)
    tiny = rec("DMA", bytes=512, descriptors=128)  # 128 rows of 4 bytes
    assert cm.instruction_ns(tiny) == pytest.approx(128 * 512 / 368.0)


def test_schedule_independent_engines_overlap_and_dependencies_serialise():
    a = rec("Vector", 1000, writes=((1, 0, 100),))
    b = rec("Scalar", 1000, writes=((2, 0, 100),))
    t_a, t_b = cm.instruction_ns(a), cm.instruction_ns(b)
    assert cm.schedule_ns([a, b]) == pytest.approx(max(t_a, t_b))
    b_dep = rec("Scalar", 1000, reads=((1, 50, 60),), writes=((2, 0, 100),))
    assert cm.schedule_ns([a, b_dep]) == pytest.approx(t_a + t_b)
    b_disjoint = rec("Scalar", 1000, reads=((1, 100, 200),), writes=((2, 0, 100),))
    assert cm.schedule_ns([a, b_disjoint]) == pytest.approx(max(t_a, t_b))
    war = rec("Scalar", 1000, writes=((1, 0, 10),))  # overwrites what `a` wrote: waits
    assert cm.schedule_ns([a, war]) == pytest.approx(t_a + t_b)


def test_dma_queues_overlap_latency_but_share_bandwidth():
    d = [rec("DMA", bytes=36800, descriptors=1, writes=((i + 10, 0, 8),)) for i in range(4)]
    assert cm.schedule_ns(d[:1]) == pytest.approx(1300 + 100)
    assert cm.schedule_ns(d) == pytest.approx(1300 + 4 * 100)


def test_roofline_and_estimate_table():
    assert cm.roofline_ns(362.5 * 1000) == pytest.approx(1000)
    assert cm.roofline_ns(0, flops_bf16=79_000 * 10) == pytest.approx(10)
    r = Recorder(0)
    r.add(engine="Tensor", op="nc_matmul", partitions=128, free_elems=512, bytes=0, flops=2 * 128 ** 2 * 512)
    r.add(engine="DMA", op="dma_copy", partitions=1, free_elems=1, bytes=262144, hbm_bytes=262144,
          descriptors=1)
    cost = cm.estimate([r])
    assert cost.instructions["Tensor"] == 1 and cost.hbm_bytes == 262144
    assert cost.modelled_ns >= cost.busy_bound_ns > 0
    assert cost.bottleneck == "DMA"
    text = cost.format()
    assert "modelled" in text and "Tensor" in text
    assert np.isfinite(cost.roofline_ns)


def test_dma_busiest_engine_is_a_lower_bound_on_the_schedule():
    """Many independent DMAs: the latency hides behind other queues' transfers, so the DMA busy
    bound is the link time or the queues' total occupancy / 16, never above the makespan."""
    r = Recorder(0)
    for i in range(64):
        r.add(engine="DMA", op="dma_copy", partitions=1, free_elems=1, bytes=36800, hbm_bytes=36800,
              descriptors=1, writes=((i + 10, 0, 8),))
    cost = cm.estimate([r])
    assert cost.busy_bound_ns == pytest.approx(64 * 100)  # the shared link: 64 x 100 ns
    assert cost.modelled_ns >= cost.busy_bound_ns
    few = Recorder(0)
    for i in range(2):
        few.add(engine="DMA", op="dma_copy", partitions=1, free_elems=1, bytes=368, hbm_bytes=368,
                descriptors=1, writes=((i + 10, 0, 8),))
    small = cm.estimate([few])  # latency-bound: 2 x (1300 + 1) ns spread over 16 queues
    assert small.busy_bound_ns == pytest.approx(2 * (1300 + 1.39) / 16, rel=1e-2)
    assert small.modelled_ns >= small.busy_bound_ns
