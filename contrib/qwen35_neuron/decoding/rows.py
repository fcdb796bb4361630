"""Row bookkeeping shared by every generation loop (CPU session, CPU VL session, Neuron generation).

A row is one request: its cache length, rotary offset (multimodal RoPE delta), next token and
whether it still decodes. The checks here run before anything touches a row's state, so a bad
request never changes any row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import RunConfig, TextConfig
from ..errors import InputError


@dataclass
class RowState:
    length: int = 0  # tokens in the cache
    rope_delta: int = 0  # rotary position minus cache position for new tokens
    next_token: int | None = None
    active: bool = False


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
