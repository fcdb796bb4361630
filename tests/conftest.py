"""Shared fixtures: tiny random Qwen3.5-MoE checkpoints written to disk and read back through the
real loading path, and their transformers references."""

from __future__ import annotations

import pytest
import torch

from qwen35_neuron.testing.reference import quiet_transformers
from qwen35_neuron.testing.tiny import build_tiny_checkpoint, load_hf_reference, load_hf_text_reference, tiny_config_dict
from tiny_models import TINY_CONFIGS

quiet_transformers()
torch.set_num_threads(1)


def pytest_addoption(parser) -> None:
    parser.addoption("--qwen35-model", default=None,
                     help="a real Qwen3.5 MoE checkpoint directory for the trn2 (marker `neuron`) tests")


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
