"""Read a checkpoint's tensors under canonical names, after the tensor gate has passed.

``iter_text_tensors`` streams one tensor at a time (per-expert checkpoints are stacked into the
fused expert form as each layer's experts are read), so a caller can shard or convert each tensor
and drop it before reading the next: peak memory stays near one tensor, not 67 GB.
``load_text_state_dict`` collects the stream into a dict for CPU tests and tiny models.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from ..config import ModelConfig, TextConfig, load_model_config
from ..errors import CheckpointError
from .expected import expected_text_shapes, expected_vision_shapes
from .gate import check_checkpoint
from .layout import MTP, TEXT, VISION, CheckpointLayout, read_source
from .reader import CheckpointReader

@contextmanager
def _opened(checkpoint: str | Path | CheckpointReader) -> Iterator[CheckpointReader]:
    """Use a caller's reader as is; open (and close) one for a directory."""
    if isinstance(checkpoint, CheckpointReader):
        yield checkpoint
        return
    reader = CheckpointReader(checkpoint)
    try:
        yield reader
    finally:
        reader.close()


def _resolve_config(reader: CheckpointReader, model_config: ModelConfig | TextConfig | None) -> ModelConfig | TextConfig:
    return load_model_config(reader.model_dir) if model_config is None else model_config


def _text_of(model_config: ModelConfig | TextConfig) -> TextConfig:
    return model_config.text if isinstance(model_config, ModelConfig) else model_config


def iter_text_tensors(
    checkpoint: str | Path | CheckpointReader,
    model_config: ModelConfig | TextConfig | None = None,
    *,
    dtype: torch.dtype | None = torch.float32,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (canonical name, tensor) for every text tensor, in model order, one at a time.

    The gate runs first and raises :class:`~qwen35_neuron.errors.CheckpointError` naming every problem.
    With tied embeddings ``lm_head.weight`` is yielded too (a second read of the embedding matrix).
    ``dtype=None`` keeps the stored dtype.
    """
    with _opened(checkpoint) as reader:
        model_config = _resolve_config(reader, model_config)
        check_checkpoint(reader, model_config, sections=(TEXT,)).raise_if_failed()
        text = _text_of(model_config)
        sources = CheckpointLayout.from_reader(reader).section(TEXT)
        names = list(expected_text_shapes(text))
        if text.tie_word_embeddings:
            names.append("lm_head.weight")
        for name in names:
            source = sources["embed_tokens.weight" if name == "lm_head.weight" and text.tie_word_embeddings else name]
            tensor = read_source(reader, source)
            yield name, tensor if dtype is None else tensor.to(dtype)


def load_text_state_dict(
    checkpoint: str | Path | CheckpointReader,
    model_config: ModelConfig | TextConfig | None = None,
    dtype: torch.dtype | None = torch.float32,
) -> dict[str, torch.Tensor]:
    """All text tensors under canonical names (fused experts). For tiny models and CPU tests;
    for the real checkpoint stream with :func:`iter_text_tensors`. Tied: lm_head is embed_tokens."""
    with _opened(checkpoint) as reader:
        model_config = _resolve_config(reader, model_config)
        tied = _text_of(model_config).tie_word_embeddings
        state: dict[str, torch.Tensor] = {}
        for name, tensor in iter_text_tensors(reader, model_config, dtype=dtype):
            # tied: share one tensor, as the HF model does, instead of keeping the second read
            state[name] = state["embed_tokens.weight"] if tied and name == "lm_head.weight" else tensor
        return state


def iter_vision_tensors(
    checkpoint: str | Path | CheckpointReader,
    model_config: ModelConfig | None = None,
    *,
    dtype: torch.dtype | None = torch.float32,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name without ``visual.``, tensor) for the vision tower, after gating the vision section."""
    with _opened(checkpoint) as reader:
        model_config = _resolve_config(reader, model_config)
        if not isinstance(model_config, ModelConfig) or model_config.vision is None:
            raise CheckpointError(f"{reader.model_dir}: the config has no vision_config, so there is no vision "
                                  "tower to load; use a composite qwen3_5_moe or qwen3_5 config.json")
        check_checkpoint(reader, model_config, sections=(VISION,)).raise_if_failed()
        sources = CheckpointLayout.from_reader(reader).section(VISION)
        for name in expected_vision_shapes(model_config.vision):
            tensor = read_source(reader, sources[name])
            yield name[len("visual."):], tensor if dtype is None else tensor.to(dtype)


def load_vision_state_dict(
    checkpoint: str | Path | CheckpointReader,
    model_config: ModelConfig | None = None,
    dtype: torch.dtype | None = torch.float32,
) -> dict[str, torch.Tensor]:
    """The vision tower's tensors, named as in HF's ``Qwen3_5MoeVisionModel`` (no ``visual.`` prefix)."""
    return dict(iter_vision_tensors(checkpoint, model_config, dtype=dtype))


def load_mtp_state_dict(
    checkpoint: str | Path | CheckpointReader,
    dtype: torch.dtype | None = torch.float32,
) -> dict[str, torch.Tensor]:
    """Whatever MTP tensors the checkpoint holds, names without ``mtp.``, experts fused. Not gated:
    kept for speculative decoding, whose consumer checks them against :func:`expected_mtp_shapes`."""
    with _opened(checkpoint) as reader:
        sources = CheckpointLayout.from_reader(reader).section(MTP)
        state = {}
        for name, source in sources.items():
            tensor = read_source(reader, source)
            state[name[len("mtp."):]] = tensor if dtype is None else tensor.to(dtype)
        return state
