"""Requests on engine rows: prefill (CTE) new prompts into chosen rows, then decode (TKG) steps.

Every row is its own request. ``prefill`` validates every prompt before anything runs, so a bad
request never changes any row (the row bookkeeping: :mod:`qwen35_neuron.decoding.rows`). A prompt longer than the largest context bucket (up to the cache
capacity) is prefilled in chunks (:func:`~qwen35_neuron.decoding.buckets.prefill_rounds`), each CTE
call continuing from the conv, recurrent and KV state the previous one left in the row; rows whose
prompt is done take no part in the later calls. A row's cache position and rotary offset
(multimodal RoPE delta) belong to its request and are reset when a new one starts there: a text
prompt after an image prompt never inherits image positions.
"""

from __future__ import annotations

import torch

from ..decoding.buckets import Chunk, chunk_window, prefill_rounds
from ..decoding.rows import (GenerationResult, RowState, advance_rows, check_generation, check_prompt, check_rows,
                             decode_until_done, decoding_rows)
from .engine import TextEngine
from .sampling import Sampler, SamplingParams


def text_rotary_positions(cache_start: torch.Tensor, length: int, rope_delta: torch.Tensor) -> torch.Tensor:
    """[3, B, S] rotary ids for text slots: cache position + the row's delta, same on all axes."""
    positions = cache_start[:, None] + rope_delta[:, None] + torch.arange(length)
    return positions[None].expand(3, -1, -1)


class GenerationSession:
    def __init__(self, engine: TextEngine, sampling: SamplingParams | None = None) -> None:
        self.engine = engine
        self.sampler = Sampler(sampling or SamplingParams())
        self.rows = [RowState() for _ in range(engine.run.batch_size)]
        self.last_logits: torch.Tensor | None = None  # [rows of the last call, V]

    # ------------------------------------------------------------------ validation
    def validate_prompt(self, prompt: list[int], max_new_tokens: int = 0) -> None:
        check_prompt(prompt, self.engine.text, self.engine.run, max_new_tokens)

    def check_rows(self, rows: list[int], count: int) -> None:
        """Rows for ``count`` new requests: distinct and existing."""
        check_rows(rows, count, len(self.rows))

    # ------------------------------------------------------------------ CTE
    def prefill(self, prompts: list[list[int]], rows: list[int] | None = None, *, max_new_tokens: int = 0,
                inputs_embeds: torch.Tensor | None = None, rotary_positions: torch.Tensor | None = None,
                rope_deltas: list[int] | None = None) -> list[int]:
        """Start one request per prompt in ``rows`` (default 0..n-1); returns each row's first token.

        ``inputs_embeds`` [n, W, H] / ``rotary_positions`` [3, n, W] / ``rope_deltas`` come from the VL
        orchestrator (W >= every prompt's length; each chunk takes its own slots of them); text
        requests leave them None.
        """
        rows = list(range(len(prompts))) if rows is None else list(rows)
        self.check_rows(rows, len(prompts))
        for prompt in prompts:
            self.validate_prompt(prompt, max_new_tokens)
        last: list[torch.Tensor | None] = [None] * len(prompts)
        for chunks in prefill_rounds([len(p) for p in prompts], self.engine.run.context_buckets):
            logits = self._run_chunks(prompts, rows, chunks, inputs_embeds, rotary_positions)
            for (index, _), row_logits in zip(chunks, logits):
                last[index] = row_logits
        logits = torch.stack(last)
        self.last_logits = logits
        self.sampler.start(rows)
        tokens = self.sampler(logits, rows)
        deltas = rope_deltas or [0] * len(prompts)
        for row, prompt, token, delta in zip(rows, prompts, tokens, deltas):
            self.rows[row] = RowState(length=len(prompt), rope_delta=delta, next_token=token, active=True)
        return tokens

    def _run_chunks(self, prompts: list[list[int]], rows: list[int], chunks: list[tuple[int, Chunk]],
                    inputs_embeds: torch.Tensor | None, rotary_positions: torch.Tensor | None) -> torch.Tensor:
        """One CTE call: chunk ``c`` of prompt ``i`` in row ``rows[i]`` for each (i, c), right padded
        to the largest of their buckets; returns logits [len(chunks), V] at each chunk's last token."""
        bucket = max(chunk.bucket for _, chunk in chunks)
        input_ids = torch.stack([chunk_window(torch.tensor(prompts[i]), 0, chunk, bucket) for i, chunk in chunks])
        cache_start = torch.tensor([chunk.start for _, chunk in chunks])
        if rotary_positions is None:
            rotary = text_rotary_positions(cache_start, bucket, torch.zeros_like(cache_start))
        else:
            rotary = torch.stack([chunk_window(rotary_positions[:, i], 1, chunk, bucket) for i, chunk in chunks], dim=1)
        embeds = None
        if inputs_embeds is not None:
            embeds = torch.stack([chunk_window(inputs_embeds[i], 0, chunk, bucket) for i, chunk in chunks])
        return self.engine.forward(input_ids, rotary, cache_start, torch.tensor([chunk.length for _, chunk in chunks]),
                                   torch.tensor([rows[i] for i, _ in chunks]), inputs_embeds=embeds)

    # ------------------------------------------------------------------ TKG
    def decode(self) -> list[int | None]:
        """One token for every active row (None for idle rows, whose state stays unchanged).
        A row whose cache is full stops here (its request is finished)."""
        active = decoding_rows(self.rows, self.engine.run.max_seq_len)
        input_ids = torch.tensor([[r.next_token if a else 0] for r, a in zip(self.rows, active)])
        cache_start = torch.tensor([r.length for r in self.rows])
        valid_len = torch.tensor([int(a) for a in active])
        deltas = torch.tensor([r.rope_delta for r in self.rows])
        logits = self.engine.forward(input_ids, text_rotary_positions(cache_start, 1, deltas), cache_start,
                                     valid_len, None)  # every row: idle ones have valid_len 0
        self.last_logits = logits
        live = [row for row, is_active in enumerate(active) if is_active]
        sampled = dict(zip(live, self.sampler(logits[live], live))) if live else {}
        return advance_rows(self.rows, [sampled.get(row, 0) for row in range(len(self.rows))], active)

    def finish(self, row: int) -> None:
        self.rows[row].active = False


def generate(engine: TextEngine, prompts: list[list[int]], max_new_tokens: int,
             sampling: SamplingParams | None = None,
             eos_token_ids: tuple[int, ...] | None = None) -> GenerationResult:
    """Generate for a batch of prompts; each row stops at EOS (excluded) or after max_new_tokens."""
    check_generation(engine.run.batch_size, len(prompts), max_new_tokens)
    eos = set(engine.text.eos_token_ids if eos_token_ids is None else eos_token_ids)
    engine.reset()
    session = GenerationSession(engine, sampling)
    first = session.prefill(prompts, max_new_tokens=max_new_tokens)
    return decode_until_done(session, first, len(prompts), max_new_tokens, eos)
