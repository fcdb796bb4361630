"""Bucket choice and the chunk schedule of a prefill.

Bucket choice is NxDI's rule on every backend: ``ModelWrapper._get_seq_bucket`` (first fit) takes the
smallest bucket *longer* than the input, so a prompt that exactly fills a bucket runs in the next one;
only the largest bucket also takes a prompt of its own length. The CPU runtime, the VL host side and
the Neuron graphs thus run a prompt at one length.

A prompt longer than the largest context bucket runs as consecutive CTE calls (chunks), each
continuing from the state the previous one left in the row. :func:`plan_chunks` is the whole
schedule: full largest-bucket chunks first, the tail in the bucket NxDI picks for it. Any
schedule gives the same tokens (every chunk continues exactly where the last one stopped); this
one makes the fewest calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError


def choose_bucket(length: int, buckets: tuple[int, ...]) -> int:
    ordered = sorted(buckets)
    for bucket in ordered:
        if length < bucket:
            return bucket
    if length == ordered[-1]:
        return ordered[-1]
    raise InputError(
        f"prompt of {length} tokens is longer than the largest context bucket ({ordered[-1]}): "
        "shorten the prompt or add a larger bucket (RunConfig.context_buckets / --buckets)"
    )


@dataclass(frozen=True)
class Chunk:
    """One CTE call of a prompt: tokens [start, start + length) run in a ``bucket``-long graph."""

    start: int  # cache position of the chunk's first token
    length: int  # real tokens
    bucket: int  # CTE length that holds them


def plan_chunks(length: int, buckets: tuple[int, ...]) -> tuple[Chunk, ...]:
    """The CTE calls of a ``length``-token prompt: largest bucket first, the tail in the bucket
    :func:`choose_bucket` (NxDI's rule) picks."""
    if length < 1:
        raise InputError("empty prompt: give at least one token id")
    largest = max(buckets)
    full = (length - 1) // largest  # the tail keeps 1..largest tokens
    chunks = [Chunk(i * largest, largest, largest) for i in range(full)]
    tail = length - full * largest
    return (*chunks, Chunk(full * largest, tail, choose_bucket(tail, buckets)))


def prefill_rounds(lengths: list[int], buckets: tuple[int, ...]) -> list[list[tuple[int, Chunk]]]:
    """Chunk k of every prompt that has one, as (prompt index, chunk), for k = 0, 1, ...: the
    calls of a batch prefill. A prompt with fewer chunks drops out of the later rounds."""
    plans = [plan_chunks(n, buckets) for n in lengths]
    rounds = max(len(plan) for plan in plans)
    return [[(i, plan[k]) for i, plan in enumerate(plans) if k < len(plan)] for k in range(rounds)]


def chunk_window(full: torch.Tensor, dim: int, chunk: Chunk, width: int, value: float = 0) -> torch.Tensor:
    """The chunk's slots of a whole-prompt tensor (token slots along ``dim``), padded with ``value``
    to ``width``: how every per-token input of a chunk (ids, embeddings, mRoPE ids) is cut."""
    part = full.narrow(dim, chunk.start, chunk.length)
    return F.pad(part, [0, 0] * (full.dim() - 1 - dim) + [0, width - chunk.length], value=value)
