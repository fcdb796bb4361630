"""Static-graph check: CTE and TKG (static MoE) export with torch.export per bucket, and the
exported graphs give the eager outputs."""

from __future__ import annotations

import pytest
import torch

from tiny_models import make_engine
from qwen35_neuron.model.export import example_step_inputs, export_step


@pytest.mark.parametrize("length, block", [(16, 128), (16, 4), (1, 128)])
def test_step_exports_and_matches_eager(tiny_dir, length, block):
    engine = make_engine(tiny_dir, moe_impl="static", batch_size=2, moe_block_size=block)
    model, specs = engine.models[0], engine.specs[0]
    torch.manual_seed(0)
    inputs = list(example_step_inputs(2, length, specs, engine.text.vocab_size))
    inputs[5:] = [torch.randn_like(s) * 0.1 if s.dtype.is_floating_point else s for s in inputs[5:]]
    program = export_step(model, tuple(inputs))
    exported = program.module()(*inputs)
    with torch.no_grad():
        logits, states = model(*inputs[:5], list(inputs[5:]))
    assert (exported[0] - logits).abs().max() < 1e-5
    for got, want in zip(exported[1:], states):
        assert (got - want).abs().max() < 1e-5
    # nothing data-dependent survived: no .item()/nonzero-style ops in the graph
    ops = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert not any("nonzero" in op or "_local_scalar_dense" in op for op in ops)


def test_eager_moe_is_not_exportable_so_static_exists(tiny_dir):
    engine = make_engine(tiny_dir, moe_impl="eager", batch_size=1)
    inputs = example_step_inputs(1, 8, engine.specs[0], engine.text.vocab_size)
    with pytest.raises(Exception):
        export_step(engine.models[0], inputs)
