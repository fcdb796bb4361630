"""The vision-language driver, for any backend: images + prompts in, tokens out, on a session's rows.

Per prefill: :func:`~qwen35_neuron.vl.request.prepare_batch` checks and lays out the batch on
the host; the vision runner encodes each patch bucket; the image embeddings replace the text
embeddings at the image tokens; :meth:`GenerationSession.prefill` (CPU: :class:`~qwen35_neuron.runtime.vl_session.VisionLanguageSession`)
or the NxDI graphs (Neuron: :class:`~qwen35_neuron.neuron.vl_session.NeuronVLSession`) run CTE with the mRoPE ids (in
chunks for prompts past the largest context bucket: each chunk takes its slots of the embeddings
and of the mRoPE ids, so a chunk boundary may fall inside an image) and records each row's rope delta, which TKG adds to the cache position. Every row is its own request:
prefill resets the rows it writes (delta included), so a text prompt after an image prompt starts
from plain text positions.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch

from ..config import RunConfig, TextConfig, VisionConfig
from ..decoding.rows import GenerationResult, RowState, check_generation, decode_until_done
from .request import PreparedBatch, VLRequest
from .scatter import merge_image_embeddings
from .vision_runner import VisionRunner, run_packs


@torch.no_grad()
def scatter_images(runner: VisionRunner, batch: PreparedBatch, vision: VisionConfig,
                   base: torch.Tensor) -> torch.Tensor:
    """``base`` [B, width, H] with the batch's image embeddings at its image tokens: the vision runner
    encodes each patch bucket, the scatter plan places the rows. The CPU session passes the text
    embeddings; the Neuron session passes zeros (its graph selects between the two itself)."""
    table = run_packs(runner, batch.packs, vision.spatial_merge_size, vision.out_hidden_size)
    return merge_image_embeddings(base, table, batch.plan.source_index, batch.plan.is_image)


class VLSession(Protocol):
    """What :func:`generate_vl` drives: ``qwen35_neuron.runtime.vl_session.VisionLanguageSession`` (CPU
    text engine) or ``qwen35_neuron.neuron.vl_session.NeuronVLSession`` (NxDI text graphs)."""

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
