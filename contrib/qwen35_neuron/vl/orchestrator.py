"""The vision-language orchestrator: images + prompts in, tokens out, on the text session's rows.

Per prefill: :func:`~qwen35_neuron.vl.request.prepare_batch` checks and lays out the batch on
the host; the vision runner encodes each patch bucket; the image embeddings replace the text
embeddings at the image tokens; :meth:`GenerationSession.prefill` runs CTE with the mRoPE ids (in
chunks for prompts past the largest context bucket: each chunk takes its slots of the embeddings
and of the mRoPE ids, so a chunk boundary may fall inside an image) and records each row's rope delta, which TKG adds to the cache position. Every row is its own request:
prefill resets the rows it writes (delta included), so a text prompt after an image prompt starts
from plain text positions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, Sequence

import torch

from ..config import ModelConfig, RunConfig, TextConfig, VisionConfig
from ..runtime.engine import TextEngine
from ..runtime.loading import load_engine
from ..runtime.sampling import SamplingParams
from ..runtime.session import (GenerationResult, GenerationSession, RowState, check_generation,
                               decode_until_done)
from ..vision.preprocess import ImageProcessorConfig, load_image_processor_config
from .request import PreparedBatch, VLRequest, prepare_batch
from .scatter import merge_image_embeddings
from .vision_runner import VisionRunner, load_vision_tower, run_packs, tower_runner

EmbedFn = Callable[[torch.Tensor], torch.Tensor]  # token ids [B, S] -> embeddings [B, S, H]


@torch.no_grad()
def scatter_images(runner: VisionRunner, batch: PreparedBatch, vision: VisionConfig,
                   base: torch.Tensor) -> torch.Tensor:
    """``base`` [B, width, H] with the batch's image embeddings at its image tokens: the vision runner
    encodes each patch bucket, the scatter plan places the rows. The CPU session passes the text
    embeddings; the Neuron session passes zeros (its graph selects between the two itself)."""
    table = run_packs(runner, batch.packs, vision.spatial_merge_size, vision.out_hidden_size)
    return merge_image_embeddings(base, table, batch.plan.source_index, batch.plan.is_image)


class VLSession(Protocol):
    """What :func:`generate_vl` drives: :class:`VisionLanguageSession` (CPU text engine) or
    ``qwen35_neuron.neuron.vl.NeuronVLSession`` (NxDI text graphs)."""

    run: RunConfig  # batch_size: rows; context_buckets / vision_buckets / max_seq_len: what prepare checks
    text: TextConfig
    rows: list[RowState]
    last_logits: torch.Tensor | None

    def prepare(self, requests: Sequence[VLRequest], max_new_tokens: int = 0) -> PreparedBatch: ...
    def reset(self) -> None: ...
    def prefill_prepared(self, batch: PreparedBatch, rows: Sequence[int] | None = None, *,
                         max_new_tokens: int = 0) -> list[int]: ...
    def decode(self) -> list[int | None]: ...
    def finish(self, row: int) -> None: ...


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


def generate_vl(vl: VLSession, requests: Sequence[VLRequest], max_new_tokens: int,
                eos_token_ids: tuple[int, ...] | None = None) -> GenerationResult:
    """Generate for a batch of requests from a clean session; each row stops at EOS (excluded) or
    after ``max_new_tokens``. Returns the tokens and the logits that chose each of them."""
    check_generation(vl.run.batch_size, len(requests), max_new_tokens)
    eos = set(vl.text.eos_token_ids if eos_token_ids is None else eos_token_ids)
    batch = vl.prepare(requests, max_new_tokens)  # a bad batch is rejected before the reset below
    vl.reset()
    first = vl.prefill_prepared(batch, max_new_tokens=max_new_tokens)
    return decode_until_done(vl, first, len(requests), max_new_tokens, eos)


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
