"""Images on the CPU runtime: the text session's rows with image embeddings scattered in at CTE.

The host side (placeholders, patch packing, scatter plan, mRoPE ids) is the backend-neutral ``vl``
package's; :func:`qwen35_neuron.vl.generate_vl` drives this session like the Neuron one
(:class:`~qwen35_neuron.neuron.vl_session.NeuronVLSession`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch

from ..config import ModelConfig, RunConfig, TextConfig
from ..decoding.rows import RowState
from ..vision.preprocess import ImageProcessorConfig, load_image_processor_config
from ..vl import PreparedBatch, VisionRunner, VLRequest, load_vision_tower, prepare_batch, scatter_images, tower_runner
from .engine import TextEngine
from .loading import load_engine
from .sampling import SamplingParams
from .session import GenerationSession

EmbedFn = Callable[[torch.Tensor], torch.Tensor]  # token ids [B, S] -> embeddings [B, S, H]


class VisionLanguageSession:
    """Requests with images on a :class:`TextEngine`'s rows (CTE with images, then plain TKG).

    ``runner`` encodes one patch bucket (the CPU tower, or a Neuron-compiled one per bucket);
    ``embed`` looks up token embeddings (default: the engine's replicated embedding table).
    """

    def __init__(self, config: ModelConfig, engine: TextEngine, runner: VisionRunner,
                 processor: ImageProcessorConfig, sampling: SamplingParams | None = None,
                 embed: EmbedFn | None = None) -> None:
        self.config, self.engine, self.runner, self.processor = config, engine, runner, processor
        self.sampling = sampling
        self.embed = embed if embed is not None else engine.models[0].embed_tokens
        self.session = GenerationSession(engine, sampling)

    @property
    def run(self) -> RunConfig:
        return self.engine.run

    @property
    def text(self) -> TextConfig:
        return self.engine.text

    @property
    def rows(self) -> list[RowState]:
        return self.session.rows

    @property
    def last_logits(self) -> torch.Tensor | None:
        return self.session.last_logits

    def reset(self) -> None:
        """Zero every row's state and forget every request."""
        self.engine.reset()
        self.session = GenerationSession(self.engine, self.sampling)

    def prepare(self, requests: Sequence[VLRequest], max_new_tokens: int = 0) -> PreparedBatch:
        """Check and lay out ``requests`` without touching any state (raises InputError)."""
        return prepare_batch(requests, self.config, self.engine.run, self.processor,
                             self.session.validate_prompt, max_new_tokens, dtype=self.engine.run.torch_dtype)

    @torch.no_grad()
    def embed_batch(self, batch: PreparedBatch) -> torch.Tensor:
        """[B, width, H] CTE input of the whole prompts (chunks take their slots): text embeddings with
        the image embeddings scattered in."""
        return scatter_images(self.runner, batch, self.config.vision, self.embed(batch.padded_input_ids()))

    def prefill(self, requests: Sequence[VLRequest], rows: Sequence[int] | None = None, *,
                max_new_tokens: int = 0) -> list[int]:
        """Start one request per entry of ``requests`` in ``rows`` (default 0..n-1); first token per row."""
        rows = list(range(len(requests))) if rows is None else list(rows)
        self.session.check_rows(rows, len(requests))
        return self.prefill_prepared(self.prepare(requests, max_new_tokens), rows, max_new_tokens=max_new_tokens)

    def prefill_prepared(self, batch: PreparedBatch, rows: Sequence[int] | None = None, *,
                         max_new_tokens: int = 0) -> list[int]:
        """:meth:`prefill` for a batch already checked by :meth:`prepare` (with the same max_new_tokens)."""
        rows = list(range(len(batch.prompts))) if rows is None else list(rows)
        self.session.check_rows(rows, len(batch.prompts))
        if not batch.has_images:  # plain text: the text path, bit for bit
            return self.session.prefill(batch.prompts, rows, max_new_tokens=max_new_tokens)
        return self.session.prefill(batch.prompts, rows, max_new_tokens=max_new_tokens,
                                    inputs_embeds=self.embed_batch(batch),
                                    rotary_positions=batch.rotary_positions, rope_deltas=batch.rope_deltas)

    def decode(self) -> list[int | None]:
        return self.session.decode()

    def finish(self, row: int) -> None:
        self.session.finish(row)


def load_vl_session(model_dir: str | Path, run: RunConfig, *, sampling: SamplingParams | None = None,
                    processor: ImageProcessorConfig | None = None,
                    runner: VisionRunner | None = None) -> tuple[ModelConfig, VisionLanguageSession]:
    """Text engine + CPU vision tower (unless ``runner`` is given) + the checkpoint's image processor."""
    config, engine = load_engine(model_dir, run)
    if runner is None:
        runner = tower_runner(load_vision_tower(model_dir, config, run.torch_dtype))
    if processor is None:
        processor = load_image_processor_config(model_dir, config.vision)
    return config, VisionLanguageSession(config, engine, runner, processor, sampling)
