"""Our model at the published checkpoints' TP degrees, sharded by NxD itself (shapes only, meta device).

Every parameter of the traced model is in the converted checkpoint, and NxD's ``get_sharded_checkpoint``
cuts each tensor to exactly the parameter's per-rank shape - which holds only when every split plain
parameter (experts, shared expert, DeltaNet conv, dt_bias, A_log) carries NxD's partition attributes
and sits in a module NxD's sharder visits - and that the cut our rank-file writer makes for each tensor
(``nxd_split``) is the partition dim and stride NxD reads from the parameter. Built from config.json alone
(see sdk_tp_shapes.py).
"""

from __future__ import annotations

import pytest

from sdk_harness import run_ranks

CASES = [("35B", 4), ("35B", 8), ("122B", 16), ("397B", 32)]


@pytest.fixture(scope="module")
def sharded():
    return run_ranks(1, "sdk_tp_shapes:checkpoint_shapes", cases=CASES)[0]


@pytest.mark.parametrize("model, tp", CASES)
def test_nxd_cuts_the_converted_checkpoint_to_every_parameter(sharded, model, tp):
    result = sharded[(model, tp)]
    assert result["tp_size"] == tp
    params, cut = result["params"], result["sharded"]
    assert sorted(params) == result["converted"]  # nothing missing, nothing extra
    wrong = {n: (cut[n], shape) for n, shape in params.items() if cut[n] != shape}
    assert wrong == {}
    assert "layers.0.mlp.experts.gate_up_proj" in result["marked"]
    assert "layers.0.linear_attn.A_log" in result["marked"]
    assert result["experts_class"] == "NxdShardedExperts"
    assert result["split_differs"] == {}  # our rank files cut each tensor as NxD reads the parameter's marks
