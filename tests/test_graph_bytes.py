"""The byte counter's rules, and what the Neuron graphs move (counted upper bounds, meta tensors)."""

from __future__ import annotations

import torch

from qwen35_neuron.analysis.byte_counter import ByteCounter, distinct_bytes

META = {"device": "meta"}


def _count(fn, *inputs, donated=(), aliased=()):
    counter = ByteCounter()
    counter.donate(donated)
    with counter:
        outputs = fn(*inputs)
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    return counter.finish(outputs, list(aliased))


def test_views_are_free_and_an_op_reads_its_operands_and_writes_its_result():
    x = torch.empty(4, 8, **META)
    w = torch.empty(16, 8, **META)
    result = _count(lambda x, w: (x.view(8, 4).t().reshape(4, 8) @ w.t())[:, :2], x, w)
    (mm,) = result.records
    assert mm.op == "aten.mm" and mm.total == (4 * 8 + 16 * 8 + 4 * 16) * 4
    assert result.output_copies == 2 * 4 * 2 * 4  # an output that is a slice is materialised


def test_broadcast_operands_count_their_distinct_elements():
    assert distinct_bytes(torch.empty(3, 1, **META).expand(3, 100)) == 3 * 4
    result = _count(lambda a, b: a * b, torch.empty(3, 100, **META), torch.empty(1, 100, **META).expand(3, 100))
    assert result.total_bytes == (300 + 100 + 300) * 4


def test_selection_reads_only_the_selected_rows():
    table = torch.empty(1000, 64, dtype=torch.bfloat16, **META)
    ids = torch.empty(2, 3, dtype=torch.long, **META)
    result = _count(lambda t, i: torch.nn.functional.embedding(i, t), table, ids)
    assert result.total_bytes == 6 * 64 * 2 + 6 * 8 + 6 * 64 * 2


def test_scatter_into_a_dead_donated_buffer_writes_only_its_updates():
    cache = torch.empty(2, 1, 4096, 8, **META)
    new = torch.empty(2, 1, 1, 8, **META)
    index = torch.empty(2, 1, 1, 8, dtype=torch.long, **META)
    step = lambda c, n, i: c.scatter(2, i, n)  # noqa: E731
    in_place = _count(step, cache, new, index, donated=[cache], aliased=[cache])
    assert in_place.total_bytes == 16 * 4 + 16 * 8 + 16 * 4
    undonated = _count(step, cache, new, index)  # a weight, say: it must be copied first
    assert undonated.total_bytes == in_place.total_bytes + 2 * cache.numel() * 4


def test_scatter_whose_destination_is_read_later_copies_it():
    cache = torch.empty(1, 1, 64, 8, **META)
    new = torch.empty(1, 1, 1, 8, **META)
    index = torch.empty(1, 1, 1, 8, dtype=torch.long, **META)
    result = _count(lambda c, n, i: (c.scatter(2, i, n), c.sum()), cache, new, index, donated=[cache])
    scatter = next(r for r in result.records if "scatter" in r.op)
    assert scatter.copies == 2 * cache.numel() * 4


def test_unchanged_state_outputs_cost_nothing():
    state = torch.empty(4, 4, **META)
    result = _count(lambda s: [s], state, donated=[state], aliased=[state])
    assert result.total_bytes == 0 and not result.records


def test_kernel_launches_and_collectives_are_single_ops():
    from qwen35_neuron.analysis.graph_bytes import all_reduce

    counter = ByteCounter()
    x = torch.empty(2, 16, **META)
    with counter:
        y = all_reduce(x)
        counter.record("kernel k", (y, 3), (torch.empty(2, 16, **META),))
    assert [r.op for r in counter.records] == ["qwen35_graph::all_reduce", "kernel k"]
    assert all(r.total == 2 * 2 * 16 * 4 for r in counter.records)


def test_the_35b_decode_graph_moves_close_to_the_roofline():
    """TKG of Qwen3.5-35B-A3B at TP 4, batch 1, cache 4096 (meta tensors, per rank): within 1.3x the
    roofline's bytes; the cache is written in place (no op writes a whole K/V cache), no row of the
    state is gathered, and the experts are read in place (no op writes expert weights)."""
    from qwen35_neuron.analysis.graph_bytes import GraphShape, count_against_roofline
    from qwen35_neuron.config.hf_config import parse_model_config
    from qwen35_neuron.testing.family_configs import QWEN35_35B

    count = count_against_roofline(parse_model_config(QWEN35_35B).text, GraphShape("tkg", 4, 1, 1, 4096))
    assert count.ratio <= 1.3, count.ratio
    cache_bytes = 4096 * 256 * 2
    records = count.counted.records
    assert not [r for r in records if r.writes >= cache_bytes and "self_attn" in r.where]
    assert not [r for r in records if r.op in ("aten.index_select", "aten.index_copy")]
    expert_bytes = 2 * 128 * 2048 * 2  # one expert's gate_up rows at TP 4
    assert not [r for r in records if "mlp.experts" in r.where and r.writes >= expert_bytes]
    assert all(r.copies == 0 for r in records) and count.counted.output_copies == 0
