"""Shared test data and helpers (imported by test modules; fixtures live in conftest.py)."""

from __future__ import annotations

from qwen35_neuron.config import RunConfig
from qwen35_neuron.runtime.loading import load_engine

# Three shapes the issue asks for, plus the default one.
TINY_CONFIGS = {
    "default": {},
    "head_dim_256": {"head_dim": 256, "rope_parameters": {"partial_rotary_factor": 0.25}},
    "single_kv_head": {"num_key_value_heads": 1},
    "six_layers": {"num_hidden_layers": 6},  # attention at layer 3 only; 6 is not a multiple of 4
    "dense": {"dense": True},  # the qwen3_5 family: an MLP in place of the MoE, untied (9B, 27B)
    "dense_tied": {"dense": True, "tie_word_embeddings": True},  # tied like 0.8B, 2B, 4B
}

PROMPTS = ([11, 42, 7, 99, 3], [5, 200, 17, 64, 128, 31, 9, 77, 150, 2, 88, 13, 21], [240, 4, 66])


def make_engine(model_dir: str, **run_kwargs):
    defaults = dict(batch_size=4, context_buckets=(8, 16, 32), max_seq_len=64, gdr_chunk_size=8)
    defaults.update(run_kwargs)
    return load_engine(model_dir, RunConfig(**defaults))[1]
