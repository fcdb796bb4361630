"""Read a checkpoint's tensors under canonical names, after the tensor gate has passed.

``iter_text_tensors`` streams one tensor at a time (per-expert checkpoints are stacked into the
fused expert form as each layer's experts are read), so a caller can shard or convert each tensor
and drop it before reading the next: peak memory stays near one tensor, not 67 GB. Each tensor is
read in the caller's dtype (a bf16 run never holds an fp32 copy) and checked for NaN/Inf values
before it is handed out (one error naming the file, the stored tensor and the fix).
``load_text_state_dict`` collects the stream into a dict for CPU tests and tiny models.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from ..config import ModelConfig, TextConfig, load_model_config
from ..errors import CheckpointError
from .expected import expected_mtp_shapes, expected_text_shapes, expected_vision_shapes
from .gate import check_checkpoint
from .integrity import check_finite
from .layout import MTP, TEXT, VISION, CheckpointLayout, DirectSource, Source, read_source
from .progress import ByteProgress
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


def source_bytes(reader: CheckpointReader, source: Source) -> int:
    """Stored bytes of one canonical tensor (all its per-expert parts)."""
    keys = [source.raw_key] if isinstance(source, DirectSource) else source.raw_keys
    return sum(reader.info(key).nbytes for key in keys)


def _read_checked(reader: CheckpointReader, sources: dict[str, Source], names: list[tuple[str, str]],
                  dtype: torch.dtype | None, check_values: bool,
                  progress: ByteProgress | None) -> Iterator[tuple[str, torch.Tensor]]:
    """(yielded name, tensor) for each (yielded name, source name): read in ``dtype``, value-checked."""
    total = sum(source_bytes(reader, sources[source]) for _, source in names)
    done = 0
    for name, source_name in names:
        source = sources[source_name]
        tensor = read_source(reader, source, dtype)
        if check_values:
            check_finite(reader, source, tensor)
        done += source_bytes(reader, source)
        if progress is not None:
            progress(done, total)
        yield name, tensor
        del tensor  # before the next read: the caller decides how long a tensor lives


def iter_text_tensors(
    checkpoint: str | Path | CheckpointReader,
    model_config: ModelConfig | TextConfig | None = None,
    *,
    dtype: torch.dtype | None = torch.float32,
    check_values: bool = True,
    progress: ByteProgress | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (canonical name, tensor) for every text tensor, in model order, one at a time.

    The gate runs first and raises :class:`~qwen35_neuron.errors.CheckpointError` naming every problem.
    With tied embeddings ``lm_head.weight`` is yielded too (a second read of the embedding matrix).
    ``dtype=None`` keeps the stored dtype; ``check_values`` refuses NaN/Inf weights; ``progress`` is
    called with (bytes read, bytes in all) after each tensor.
    """
    with _opened(checkpoint) as reader:
        model_config = _resolve_config(reader, model_config)
        check_checkpoint(reader, model_config, sections=(TEXT,)).raise_if_failed()
        text = _text_of(model_config)
        sources = CheckpointLayout.from_reader(reader).section(TEXT)
        names = [(name, name) for name in expected_text_shapes(text)]
        if text.tie_word_embeddings:
            names.append(("lm_head.weight", "embed_tokens.weight"))
        yield from _read_checked(reader, sources, names, dtype, check_values, progress)


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
        names = [(name[len("visual."):], name) for name in expected_vision_shapes(model_config.vision)]
        yield from _read_checked(reader, sources, names, dtype, True, None)


def load_vision_state_dict(
    checkpoint: str | Path | CheckpointReader,
    model_config: ModelConfig | None = None,
    dtype: torch.dtype | None = torch.float32,
) -> dict[str, torch.Tensor]:
    """The vision tower's tensors, named as in HF's ``Qwen3_5MoeVisionModel`` (no ``visual.`` prefix)."""
    return dict(iter_vision_tensors(checkpoint, model_config, dtype=dtype))


def iter_mtp_tensors(
    checkpoint: str | Path | CheckpointReader,
    text: TextConfig,
    *,
    num_layers: int = 1,
    dtype: torch.dtype | None = torch.float32,
    progress: ByteProgress | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ("mtp.*" name, tensor) of the MTP head (speculative decoding) in the order of
    :func:`~.expected.expected_mtp_shapes`, after checking from the headers that the checkpoint
    holds exactly ``num_layers`` MTP layers of this config (one error naming the mismatches)."""
    with _opened(checkpoint) as reader:
        sources = CheckpointLayout.from_reader(reader).section(MTP)
        if not sources:
            raise CheckpointError(f"{reader.model_dir} has no mtp.* tensors, so it cannot draft with an MTP head: "
                                  "use a checkpoint that ships them (every published Qwen3.5 checkpoint does)",
                                  model_dir=str(reader.model_dir))
        expected = expected_mtp_shapes(text, num_layers)
        found = {name: _source_shape(source) for name, source in sources.items()}
        problems = [f"{name}: expected {list(shape)}, found {list(found[name])}" if name in found
                    else f"{name}: missing" for name, shape in expected.items()
                    if name not in found or found[name] != shape]
        problems += [f"{name}: not part of {num_layers} MTP layer(s)" for name in found if name not in expected]
        if problems:
            raise CheckpointError(f"{reader.model_dir}: the MTP tensors do not match config.json ({num_layers} MTP "
                                  "layer(s) expected): " + "; ".join(problems[:5])
                                  + (f" ... and {len(problems) - 5} more" if len(problems) > 5 else ""),
                                  model_dir=str(reader.model_dir))
        yield from _read_checked(reader, sources, [(name, name) for name in expected], dtype, True, progress)


def _source_shape(source: Source) -> tuple[int, ...]:
    """The canonical (fused) shape of a source, per-expert parts stacked."""
    if isinstance(source, DirectSource):
        return source.shape
    experts = sorted(source.parts)
    first = [source.parts[experts[0]][proj] for proj in source.projections]
    return (len(experts), sum(part.shape[0] for part in first), *first[0].shape[1:])


def load_mtp_state_dict(
    checkpoint: str | Path | CheckpointReader,
    dtype: torch.dtype | None = torch.float32,
) -> dict[str, torch.Tensor]:
    """Whatever MTP tensors the checkpoint holds, names without ``mtp.``, experts fused. Not gated:
    kept for speculative decoding, whose consumer checks them against :func:`expected_mtp_shapes`."""
    with _opened(checkpoint) as reader:
        sources = CheckpointLayout.from_reader(reader).section(MTP)
        names = [(name[len("mtp."):], name) for name in sources]
        return dict(_read_checked(reader, sources, names, dtype, True, None))
