"""The rank files ``shard_weights`` streams, against NxD's own sharder, inside the real NxDI / NxD.

Run by the harness as a ``module:function`` job in each rank of NxDI's CPU mode: the application is
built through ``to_cpu()`` (so NxD's parallel state and the model's real tensor-parallel attributes
exist), NxD's ``get_sharded_checkpoint`` cuts the whole checkpoint NxDI's loader returns for this rank
(what ``ModelBuilder.shard_checkpoint`` and ``to_cpu`` feed it), and our streamed file for this rank is
read back beside it.
"""

from __future__ import annotations

import os
import tempfile

import torch

from sdk_probes import _settings
from sdk_harness import build_application

BACKENDS = ("ours", "nxd")


def rank_files_job(model_dir: str, tp: int) -> dict:
    from neuronx_distributed.trace.trace import get_sharded_checkpoint
    from safetensors.torch import load_file

    from qwen35_neuron.neuron_layout.rank_files import rank_file_name

    results = {}
    for backend in BACKENDS:
        app = build_application(model_dir, _settings(tp, moe_backend=backend, save_sharded_checkpoint=True))
        rank = torch.distributed.get_rank()
        expected = app.checkpoint_loader_fn()
        get_sharded_checkpoint(expected, app.context_encoding_model.model, rank, tp)
        with tempfile.TemporaryDirectory(prefix=f"rank{rank}-") as out:
            app.shard_weights(out)
            written = load_file(os.path.join(out, "weights", rank_file_name(rank)))
            files = sorted(os.listdir(os.path.join(out, "weights")))
        results[backend] = {
            "files": files,
            "missing": sorted(set(expected) - set(written)),
            "extra": sorted(set(written) - set(expected)),
            "unequal": [name for name in expected if name in written
                        and not (written[name].dtype == expected[name].dtype
                                 and torch.equal(written[name], expected[name].contiguous()))],
            "count": len(written),
        }
    return results
