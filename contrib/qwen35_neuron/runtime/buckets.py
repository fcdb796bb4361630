"""Bucket choice: the smallest compiled context length that holds a prompt."""

from __future__ import annotations

from ..errors import InputError


def choose_bucket(length: int, buckets: tuple[int, ...]) -> int:
    for bucket in sorted(buckets):
        if length <= bucket:
            return bucket
    raise InputError(
        f"prompt of {length} tokens is longer than the largest context bucket ({max(buckets)}): "
        "shorten the prompt or add a larger bucket (RunConfig.context_buckets / --buckets)"
    )
