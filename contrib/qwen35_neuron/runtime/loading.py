"""Build a CPU engine from a Hugging Face model directory (config gate, lazy weights, sharding)."""

from __future__ import annotations

from pathlib import Path

from ..checkpoint.progress import ByteProgress
from ..checkpoint.loader import iter_text_tensors
from ..config import ModelConfig, RunConfig, load_model_config
from .engine import TextEngine


def load_engine(model_dir: str | Path, run: RunConfig,
                progress: ByteProgress | None = None) -> tuple[ModelConfig, TextEngine]:
    """Read config.json, check every tensor header (names, shapes, dtypes, byte ranges) before
    building, then build the rank models of ``run.backend``, streaming the weights from safetensors
    in the run dtype (each checked for NaN/Inf) and sharding them per rank by the same conversion
    the Neuron path uses. ``progress`` gets (bytes read, bytes in all) after each tensor."""
    config = load_model_config(model_dir)
    tensors = iter_text_tensors(model_dir, config, dtype=run.torch_dtype, progress=progress)
    return config, TextEngine.from_state_dict(config.text, run, tensors)
