"""Rank-side code of test_nxdi_tp_shapes.py: our model at the real checkpoints' TP degrees, sharded by NxD.

A world of 4 to 32 ranks does not fit on this machine, and only shapes are checked, so one process
stands for rank 0 of it: torch's fake process group (a torch test double that runs no collective)
gives NxD's ``initialize_model_parallel`` a world of ``tp`` ranks, the model is built on the meta device
from config.json alone, and NxD's own ``get_sharded_checkpoint`` cuts the converted checkpoint for
rank 0 - exactly what ``to_cpu()`` and ``shard_weights`` do with real tensors.
"""

from __future__ import annotations

import json
import os
import tempfile

import torch
import torch.distributed as dist

BACKEND = "qwen35_shapes_only"


def _register_backend() -> None:
    from torch._C._distributed_c10d import FakeProcessGroup

    def create(store, rank, world_size, timeout=None, *args):
        return FakeProcessGroup._create_internal(rank, world_size)

    if BACKEND not in dist.Backend.backend_list:
        dist.Backend.register_backend(BACKEND, create, devices=["cpu"])


def checkpoint_shapes(cases: list[tuple[str, int]]) -> dict:
    """For each (model, tp): names and per-rank shapes of the model's parameters, of NxD's cut of the
    converted checkpoint, which parameters our provider marked for NxD's sharder, and every parameter
    whose (partition dim, stride) in the model differs from the cut our rank-file writer makes
    (``nxd_split``; None for a parameter NxD's sharder leaves whole)."""
    from torch.testing._internal.distributed.fake_pg import FakeStore

    from neuronx_distributed.parallel_layers import parallel_state
    from neuronx_distributed.trace.trace import get_sharded_checkpoint
    from qwen35_neuron.checkpoint import expected_text_shapes
    from qwen35_neuron.config.neuron_settings import preset
    from qwen35_neuron.neuron_layout.layout import neuron_checkpoint
    from qwen35_neuron.neuron_layout.rank_files import nxd_split
    from qwen35_neuron.testing import family_configs

    import qwen35_neuron.neuron as neuron
    from qwen35_neuron.neuron.model import NeuronQwen35MoeModel

    _register_backend()
    raw = {"35B": family_configs.QWEN35_35B, "122B": family_configs.QWEN35_122B, "397B": family_configs.QWEN35_397B}
    out = {}
    for model_name, tp in cases:
        os.environ.pop("NXD_CPU_MODE", None)  # CPU mode would build gloo groups, which need real ranks
        dist.init_process_group(BACKEND, rank=0, world_size=tp, store=FakeStore())
        parallel_state.initialize_model_parallel(tensor_model_parallel_size=tp, skip_collective_init=True)
        os.environ["NXD_CPU_MODE"] = "1"  # the model is built as to_cpu() builds it
        with tempfile.TemporaryDirectory() as model_dir:
            with open(os.path.join(model_dir, "config.json"), "w") as f:
                json.dump(raw[model_name], f)
            config = neuron.inference_config(model_dir, preset("trn2.3xlarge", tp_degree=tp, deltanet_kernel="torch",
                                                               attention_kernel="torch"))
            with torch.device("meta"):
                model = NeuronQwen35MoeModel(config)
            text = config.text()
            meta = ((n, torch.empty(s, device="meta")) for n, s in expected_text_shapes(text).items())
            checkpoint = dict(neuron_checkpoint(meta, text, tp))
            converted = sorted(checkpoint)
            get_sharded_checkpoint(checkpoint, model, 0, tp)
        own = [(n, p) for n, p in model.named_parameters() if not n.startswith("past_key_values.")]
        params = {n: tuple(p.shape) for n, p in own}
        marks = {n: (p.partition_dim, p.partition_stride) if getattr(p, "tensor_model_parallel", False) else None
                 for n, p in own}
        out[(model_name, tp)] = {
            "params": params, "sharded": {n: tuple(t.shape) for n, t in checkpoint.items()}, "converted": converted,
            "marked": list(model.marked_parameters), "experts_class": type(model.layers[0].mlp.experts).__name__,
            "tp_size": parallel_state.get_tensor_model_parallel_size(),
            "split_differs": {n: (nxd_split(n), mark) for n, mark in marks.items() if nxd_split(n) != mark},
        }
        parallel_state.destroy_model_parallel()
        dist.destroy_process_group()
    return out
