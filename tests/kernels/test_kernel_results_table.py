"""The graph-bytes benchmark's table of kernel results (shapes, dtypes) equals what the kernels return."""

from __future__ import annotations

import torch

from kernel_helpers import gdn_inputs
import pytest

from qwen35_neuron.analysis.byte_counter import ByteCounter
from qwen35_neuron.analysis.graph_bytes import KERNEL_RESULTS, CountingRunner
from qwen35_neuron.kernels.nki_ops import EmulatorRunner, kernel_ops


@pytest.mark.parametrize("lnc", [1, 2])
def test_every_kernel_result_matches_the_benchmark_table(lnc):
    emulator, seen = EmulatorRunner(lnc=lnc), []

    def checking(name, *args):
        results = emulator(name, *args)
        got = results if isinstance(results, tuple) else (results,)
        predicted = KERNEL_RESULTS[name](lnc, *args)
        assert [(tuple(t.shape), t.dtype) for t in got] == [(tuple(t.shape), t.dtype) for t in predicted], name
        seen.append(name)
        return results

    gen = torch.Generator().manual_seed(0)
    for prefill in ("gdn_prefill", "gdn_prefill_bf16"):
        ops = kernel_ops(checking, prefill)
        q, k, v, g, beta, state = gdn_inputs(2, 9, 1, 2, 16, seed=1, dtype=torch.bfloat16)
        ops.gdr_prefill(q, k, v, g, beta, state, 64)
    ops.gdr_decode(q[:, :1], k[:, :1], v[:, :1], g[:, :1], beta[:, :1], state)
    a, b = torch.randn(2, 1, 2, generator=gen), torch.randn(2, 1, 2, generator=gen)
    z = torch.randn(2, 1, 2, 16, generator=gen).to(torch.bfloat16)
    ops.gdr_decode_gated(q[:, :1], k[:, :1], v[:, :1], a, b, torch.zeros(2), torch.ones(2), z, torch.ones(16), state,
                         1e-6)
    x, conv = torch.randn(2, 6, 40, generator=gen), torch.randn(2, 40, 3, generator=gen)
    ops.causal_conv(x, conv, torch.randn(40, 4, generator=gen), torch.tensor([6, 2]))
    ops.causal_conv(x[:, :1], conv, torch.randn(40, 4, generator=gen), torch.tensor([1, 0]))
    qa = torch.randn(2, 4, 5, 32, generator=gen)
    ops.attention(qa, torch.randn(2, 2, 9, 32, generator=gen), torch.randn(2, 2, 9, 32, generator=gen),
                  torch.tensor([[4, 5, 6, 7, 8], [2, 3, 4, 4, 4]]), 0.2)
    x = torch.randn(2, 128, generator=gen)
    ops.moe_decode(x, torch.rand(2, 2, generator=gen), torch.tensor([[1, 3], [3, 0]]),
                   torch.randn(4, 64, 128, generator=gen), torch.randn(4, 128, 32, generator=gen))
    ops.router_logits(x.to(torch.bfloat16), torch.randn(16, 128, generator=gen).to(torch.bfloat16))
    assert set(seen) == set(KERNEL_RESULTS)


def _expert_args(gen):
    bf16 = torch.bfloat16
    return ("moe_decode", "expert_decode",
            (torch.randn(3, 256, generator=gen).to(bf16), torch.rand(3, 2, generator=gen),
             torch.tensor([[5, 2], [2, 2], [7, 0]]),  # expert 2 chosen three times: read once per pair
             torch.randn(8, 256, 256, generator=gen).to(bf16), torch.randn(8, 256, 128, generator=gen).to(bf16)))


def _router_args(tokens):
    def build(gen):
        bf16 = torch.bfloat16
        return ("router_logits", "router_logits",
                (torch.randn(tokens, 256, generator=gen).to(bf16), torch.randn(64, 256, generator=gen).to(bf16)))
    return build


@pytest.mark.parametrize("lnc", [1, 2])
@pytest.mark.parametrize("case", [_expert_args, _router_args(1), _router_args(200)],
                         ids=["expert_decode", "router_decode", "router_two_tiles"])
def test_the_counted_bytes_of_partial_reading_kernels_are_their_hbm_traffic(lnc, case):
    """The benchmark counts expert_decode as reading the chosen experts' rows only, router_logits as
    reading the weights once per working program: exactly the HBM bytes their DMAs move in the emulator."""
    op, kernel, args = case(torch.Generator().manual_seed(1))
    runs = []
    getattr(kernel_ops(EmulatorRunner(lnc=lnc, record=runs)), op)(*args)
    counter = ByteCounter()
    getattr(kernel_ops(CountingRunner(counter, lnc)), op)(*[a.to("meta") for a in args])
    (launch,) = [r for r in counter.records if r.op == f"kernel {kernel}"]
    assert launch.total == runs[-1][1].cost.hbm_bytes
