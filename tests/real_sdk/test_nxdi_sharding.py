"""The per-rank checkpoint files our ``shard_weights`` streams equal what NxD's real sharder cuts
(names, shapes, dtypes, values), for our MoE layout and NxD's, at TP 1 and 2."""

from __future__ import annotations

import pytest

from sdk_harness import run_ranks


@pytest.mark.parametrize("tp", [1, 2])
def test_streamed_rank_files_equal_nxd_sharding(tier_data, tp):
    results = run_ranks(tp, "sdk_sharding:rank_files_job", model_dir=str(tier_data / "default"), tp=tp)
    for rank, result in enumerate(results):
        for backend, outcome in result.items():
            assert outcome["files"] == [f"tp{r}_sharded_checkpoint.safetensors" for r in range(tp)], (rank, backend)
            assert outcome["missing"] == [] and outcome["extra"] == [], (rank, backend, outcome)
            assert outcome["unequal"] == [] and outcome["count"] > 20, (rank, backend, outcome)
