"""Requests on engine rows: prefill (CTE) new prompts into chosen rows, then decode (TKG) steps.

Every row is its own request. ``prefill`` validates every prompt before anything runs, so a bad
request never changes any row. A prompt longer than the largest context bucket (up to the cache
capacity) is prefilled in chunks (:func:`~qwen35_neuron.runtime.buckets.prefill_rounds`), each CTE
call continuing from the conv, recurrent and KV state the previous one left in the row; rows whose
prompt is done take no part in the later calls. A row's cache position and rotary offset
(multimodal RoPE delta) belong to its request and are reset when a new one starts there: a text
prompt after an image prompt never inherits image positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import RunConfig, TextConfig
from ..errors import InputError
from .buckets import Chunk, chunk_window, prefill_rounds
from .engine import TextEngine
from .sampling import Sampler, SamplingParams


@dataclass
class RowState:
    length: int = 0  # tokens in the cache
    rope_delta: int = 0  # rotary position minus cache position for new tokens
    next_token: int | None = None
    active: bool = False


def text_rotary_positions(cache_start: torch.Tensor, length: int, rope_delta: torch.Tensor) -> torch.Tensor:
    """[3, B, S] rotary ids for text slots: cache position + the row's delta, same on all axes."""
    positions = cache_start[:, None] + rope_delta[:, None] + torch.arange(length)
    return positions[None].expand(3, -1, -1)


CAPACITY_OPTION = "--max-seq-len (RunConfig.max_seq_len)"


def check_prompt(prompt: list[int], text: TextConfig, run: RunConfig, max_new_tokens: int = 0,
                 capacity_option: str = CAPACITY_OPTION) -> None:
    """A prompt fits the vocabulary and, with ``max_new_tokens`` after it, the cache of its row
    (shared with the Neuron VL session, whose capacity is named by ``capacity_option``)."""
    vocab, capacity = text.vocab_size, run.max_seq_len
    if len(prompt) == 0:
        raise InputError("empty prompt: give at least one token id")
    bad = [t for t in prompt if not 0 <= int(t) < vocab]
    if bad:
        raise InputError(f"token id {bad[0]} is outside the vocabulary [0, {vocab}): check the tokenizer/model pair")
    check_capacity(len(prompt), max_new_tokens, capacity, capacity_option)


def check_capacity(length: int, max_new_tokens: int, capacity: int, capacity_option: str = CAPACITY_OPTION) -> None:
    """A prompt of ``length`` tokens and the tokens generated after it fit a row's cache (any length
    does otherwise: a prompt past the largest context bucket is prefilled in chunks)."""
    need = length + max_new_tokens
    if need > capacity:
        raise InputError(f"a prompt of {length} tokens and max_new_tokens {max_new_tokens} need {need} cache slots "
                         f"per row, but the cache holds {capacity}: raise {capacity_option} to at least {need} "
                         "or generate fewer tokens")


def check_rows(rows: list[int], count: int, batch_size: int) -> None:
    """Rows for ``count`` new requests: distinct and existing."""
    if len(rows) != count or len(set(rows)) != count:
        raise InputError(f"need {count} distinct rows, got {rows}")
    bad = [r for r in rows if not 0 <= r < batch_size]
    if bad:
        raise InputError(f"row {bad[0]} does not exist: the engine has batch_size {batch_size}")


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


def decoding_rows(rows: list[RowState], capacity: int) -> list[bool]:
    """Which rows take part in the next decode step; a row whose cache is full finishes here."""
    for row in rows:
        row.active = row.active and row.length < capacity
    return [row.active for row in rows]


def advance_rows(rows: list[RowState], tokens: list[int], active: list[bool]) -> list[int | None]:
    """Record a decode step's tokens in the rows that took part; None for the others."""
    out: list[int | None] = []
    for row, token, is_active in zip(rows, tokens, active):
        if is_active:
            row.length += 1
            row.next_token = token
        out.append(token if is_active else None)
    return out


@dataclass
class GenerationResult:
    tokens: list[list[int]]  # generated ids per prompt, EOS excluded
    logits: list[list[torch.Tensor]]  # per prompt, the [V] logits that chose each generated token


def check_generation(batch_size: int, count: int, max_new_tokens: int) -> None:
    """A batch of ``count`` requests fits ``batch_size`` rows and asks for at least one token."""
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if count > batch_size:
        raise InputError(f"{count} prompts exceed the engine batch_size {batch_size}: "
                         "raise --batch-size or send fewer prompts")


def decode_until_done(session, first_tokens: list[int], count: int, max_new_tokens: int,
                      eos: set[int]) -> GenerationResult:
    """Decode rows 0..count-1 of ``session`` (a GenerationSession or anything with its ``rows``,
    ``last_logits``, ``finish`` and ``decode``) until each hit EOS (excluded) or max_new_tokens."""
    result = GenerationResult([[] for _ in range(count)], [[] for _ in range(count)])
    tokens: list[int | None] = list(first_tokens)
    while True:
        for row, token in enumerate(tokens[:count]):
            if token is None:
                continue
            result.logits[row].append(session.last_logits[row])
            if token in eos:
                session.finish(row)
                continue
            result.tokens[row].append(token)
            if len(result.tokens[row]) >= max_new_tokens:
                session.finish(row)
        if not any(session.rows[row].active for row in range(count)):
            return result
        tokens = session.decode()


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
