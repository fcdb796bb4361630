"""Build a CPU engine from a Hugging Face model directory (config gate, lazy weights, sharding)."""

from __future__ import annotations

from pathlib import Path

from ..checkpoint.loader import load_text_state_dict
from ..config import ModelConfig, RunConfig, load_model_config
from .engine import TextEngine


def load_engine(model_dir: str | Path, run: RunConfig) -> tuple[ModelConfig, TextEngine]:
    """Read config.json, check every tensor (names and shapes) before building, then build the
    rank models of ``run.backend``. Weights are read lazily from safetensors and sharded per rank by
    the same conversion the Neuron path uses."""
    config = load_model_config(model_dir)
    state = load_text_state_dict(model_dir, config)
    return config, TextEngine.from_state_dict(config.text, run, state)
