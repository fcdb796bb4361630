"""Shared fixtures: tiny random Qwen3.5-MoE checkpoints written to disk and read back through the
real loading path, their transformers references, and CPU engines."""

from __future__ import annotations

import pytest
import torch

from qwen35_neuron.config import RunConfig
from qwen35_neuron.runtime.loading import load_engine
from qwen35_neuron.testing.reference import quiet_transformers
from qwen35_neuron.testing.tiny import build_tiny_checkpoint, load_hf_reference, load_hf_text_reference, tiny_config_dict

quiet_transformers()
torch.set_num_threads(1)

# Three shapes the issue asks for, plus the default one.
TINY_CONFIGS = {
    "default": {},
    "head_dim_256": {"head_dim": 256, "rope_parameters": {"partial_rotary_factor": 0.25}},
    "single_kv_head": {"num_key_value_heads": 1},
    "six_layers": {"num_hidden_layers": 6},  # attention at layer 3 only; 6 is not a multiple of 4
}


@pytest.fixture(scope="session")
def checkpoint_dirs(tmp_path_factory) -> dict[str, str]:
    dirs = {}
    for name, overrides in TINY_CONFIGS.items():
        path = tmp_path_factory.mktemp(f"ckpt-{name}")
        build_tiny_checkpoint(path, tiny_config_dict(**overrides), seed=1)
        dirs[name] = str(path)
    return dirs


@pytest.fixture(scope="session")
def tiny_dir(checkpoint_dirs) -> str:
    return checkpoint_dirs["default"]


@pytest.fixture(scope="session")
def hf_models(checkpoint_dirs):
    """Lazily built transformers references: (name, 'causal'|'conditional') -> model."""
    cache: dict = {}

    def get(name: str, kind: str = "causal"):
        if (name, kind) not in cache:
            loader = load_hf_text_reference if kind == "causal" else load_hf_reference
            cache[(name, kind)] = loader(checkpoint_dirs[name])
        return cache[(name, kind)]

    return get


def make_engine(model_dir: str, **run_kwargs):
    defaults = dict(batch_size=4, context_buckets=(8, 16, 32), max_seq_len=64, gdr_chunk_size=8)
    defaults.update(run_kwargs)
    return load_engine(model_dir, RunConfig(**defaults))[1]


PROMPTS = ([11, 42, 7, 99, 3], [5, 200, 17, 64, 128, 31, 9, 77, 150, 2, 88, 13, 21], [240, 4, 66])
