"""The per-rank checkpoint files our ``shard_weights`` streams equal what NxD's real sharder cuts
(names, shapes, dtypes, values), for our MoE layout and NxD's, at TP 1 and 2; and in bf16 after NxDI's
pre-sharding hook."""

from __future__ import annotations

import pytest
import torch

from sdk_harness import run_ranks


@pytest.mark.parametrize("tp", [1, 2])
def test_streamed_rank_files_equal_nxd_sharding(tier_data, tp):
    results = run_ranks(tp, "sdk_sharding:rank_files_job", model_dir=str(tier_data / "default"), tp=tp)
    for rank, result in enumerate(results):
        for backend, outcome in result.items():
            assert outcome["files"] == [f"tp{r}_sharded_checkpoint.safetensors" for r in range(tp)], (rank, backend)
            assert outcome["missing"] == [] and outcome["extra"] == [], (rank, backend, outcome)
            assert outcome["unequal"] == [] and outcome["count"] > 20, (rank, backend, outcome)


def test_rank_file_in_the_run_dtype_after_the_hook(application, tiny_dir, tmp_path):
    """In this process (TP 1, bf16): ``shard_weights`` calls NxDI's ``pre_shard_weights_hook`` with the
    application once, first, and writes NxD's cut in the run dtype (the SPMD rank tensor stays int32)."""
    from neuronx_distributed.trace.trace import get_sharded_checkpoint
    from safetensors.torch import load_file

    from qwen35_neuron.neuron_layout.layout import RANK_UTIL_KEY
    from qwen35_neuron.neuron_layout.rank_files import rank_file_name

    app = application(tiny_dir, dtype="bfloat16", save_sharded_checkpoint=True)
    hooked = []
    app.shard_weights(str(tmp_path), pre_shard_weights_hook=lambda a: hooked.append((a, (tmp_path / "weights").exists())))
    assert hooked == [(app, False)]
    expected = app.checkpoint_loader_fn()
    get_sharded_checkpoint(expected, app.context_encoding_model.model, 0, 1)
    written = load_file(str(tmp_path / "weights" / rank_file_name(0)))
    assert written.keys() == expected.keys()
    for name, tensor in expected.items():
        assert written[name].dtype == (torch.int32 if name == RANK_UTIL_KEY else torch.bfloat16), name
        assert torch.equal(written[name], tensor.contiguous()), name
