"""nki_sim_ops (the nki-sim ModelOps table) == the twins; the emulator's rules bite; the report runs."""

from __future__ import annotations

import pytest
import torch

from kernel_helpers import gdn_inputs, rel_err
from qwen35_neuron.kernels.nki_ops import nki_sim_ops
from qwen35_neuron.model.model_ops import TORCH_OPS


@pytest.fixture(scope="module")
def table_and_runs():
    runs: list = []
    return nki_sim_ops(record=runs), runs


def test_deltanet_entries(table_and_runs):
    ops, runs = table_and_runs
    q, k, v, g, beta, state = gdn_inputs(2, 9, 1, 2, 16, seed=1)
    for got, want in zip(ops.gdr_prefill(q, k, v, g, beta, state, 64),
                         TORCH_OPS.gdr_prefill(q, k, v, g, beta, state, 64)):
        assert rel_err(got, want) < 1e-4
    one = (q[:, :1], k[:, :1], v[:, :1], g[:, :1], beta[:, :1], state)
    for got, want in zip(ops.gdr_decode(*one), TORCH_OPS.gdr_decode(*one)):
        assert rel_err(got, want) < 1e-5
    assert [name for name, _ in runs[-2:]] == ["gdn_prefill", "gdn_decode"]
    assert runs[-1][1].cost.modelled_ns > 0


def test_conv_entry_pads_channels(table_and_runs):
    ops, _ = table_and_runs
    gen = torch.Generator().manual_seed(2)
    x, state = torch.randn(2, 6, 40, generator=gen), torch.randn(2, 40, 3, generator=gen)
    weight, valid = torch.randn(40, 4, generator=gen), torch.tensor([6, 2])
    for length, lens in ((6, valid), (1, torch.tensor([1, 0]))):
        got = ops.causal_conv(x[:, :length], state, weight, lens)
        want = TORCH_OPS.causal_conv(x[:, :length], state, weight, lens)
        assert got[0].shape == want[0].shape and got[1].shape == want[1].shape
        assert rel_err(got[0], want[0]) < 1e-5
        assert torch.equal(got[1], want[1])


def test_attention_entry_pads_head_dim(table_and_runs):
    ops, _ = table_and_runs
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(2, 4, 5, 32, generator=gen)
    k, v = torch.randn(2, 2, 9, 32, generator=gen), torch.randn(2, 2, 9, 32, generator=gen)
    pos = torch.tensor([[4, 5, 6, 7, 8], [2, 3, 4, 4, 4]])
    for s in (5, 1):  # prefill and a decode step
        got = ops.attention(q[:, :, :s], k, v, pos[:, :s], 0.2)
        want = TORCH_OPS.attention(q[:, :, :s], k, v, pos[:, :s], 0.2)
        assert rel_err(got, want) < 1e-5


def test_rule_breaking_kernel_fails_in_the_emulator():
    """A 256-partition SBUF tile, or GpSimd writing PSUM, is not a trn2 kernel: the emulator
    refuses both with its rule error (the same checks guard our kernels in every test)."""
    import nki
    import nki.isa as nisa
    import nki.language as nl
    from qwen35_neuron.kernels.nki_emulator import NkiRuleError

    @nki.jit
    def too_many_partitions(x):
        tile = nl.ndarray((256, 4), dtype=nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=tile, src=x)
        return tile

    @nki.jit
    def gpsimd_writes_psum(x):
        ps = nl.ndarray((128, 4), dtype=nl.float32, buffer=nl.psum)
        nisa.iota(ps, pattern=[[1, 4]], offset=0, channel_multiplier=0)
        return x

    with pytest.raises(NkiRuleError, match="partition"):
        too_many_partitions(torch.zeros(256, 4).numpy())
    with pytest.raises(NkiRuleError, match="PSUM|psum"):
        gpsimd_writes_psum(torch.zeros(128, 4).numpy())


def test_kernel_report_runs_and_labels_itself():
    from qwen35_neuron.kernels.nkilib_sources import missing_line
    from qwen35_neuron.kernels.report import kernel_report
    text = kernel_report(tp_degrees=(8,), seq=128, batch=1, lncs=(1,))
    assert "modelled, uncalibrated" in text and "not measured" in text
    for name in ("gdn_decode_fused", "gdn_prefill", "flash_attention_d256", "causal_conv1d_cte", "expert_decode",
                 "busiest engine", "makespan"):
        assert name in text
    absent = missing_line("nki-library comparison")
    if absent:  # a fresh machine: ours only, and one line saying why
        assert absent in text and "nki-library gdn_tkg" not in text
    else:
        assert "nki-library gdn_tkg / our gdn_decode_fused" in text and "nki-library gdn_cte" in text
