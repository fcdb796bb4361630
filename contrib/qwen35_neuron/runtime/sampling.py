"""Next-token choice: greedy, or seeded sampling with temperature, top-k and top-p."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import InputError


@dataclass(frozen=True)
class SamplingParams:
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise InputError(f"temperature must be a finite number > 0 (got {self.temperature}); use greedy "
                             "decoding instead")
        if not (math.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise InputError(f"top_p must be in (0, 1] (got {self.top_p})")
        if self.top_k < 0:
            raise InputError(f"top_k must be >= 0 (got {self.top_k})")
        if not 0 <= self.seed < 2**64:
            raise InputError(f"seed must be in 0..2^64-1 (got {self.seed})")


class Sampler:
    """Greedy, or seeded sampling with one generator per row: each request's generator is seeded
    with ``seed`` when it starts, so its samples depend only on its own logits - the same whether it
    runs alone or beside others, in any row."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self.generators: dict[int, torch.Generator] = {}

    def start(self, rows: list[int]) -> None:
        """New requests in ``rows``: fresh generators."""
        for row in rows:
            self.generators[row] = torch.Generator().manual_seed(self.params.seed)

    def __call__(self, logits: torch.Tensor, rows: list[int]) -> list[int]:
        """logits [len(rows), V] -> one token id per row of ``rows``."""
        if not self.params.do_sample:
            return logits.argmax(dim=-1).tolist()
        scores = logits.float()
        # scaled from the row maximum: the same distribution, and a tiny temperature cannot overflow to inf
        scores = (scores - scores.max(dim=-1, keepdim=True).values) / self.params.temperature
        probs = self._filtered(scores).softmax(dim=-1)
        return [int(torch.multinomial(p, 1, generator=self._generator(row))) for p, row in zip(probs, rows)]

    def _generator(self, row: int) -> torch.Generator:
        if row not in self.generators:
            self.start([row])
        return self.generators[row]

    def _filtered(self, scores: torch.Tensor) -> torch.Tensor:
        """Top-k, then top-p (the token that crosses p is kept) on temperature-scaled scores."""
        if self.params.top_k > 0:
            kth = scores.topk(min(self.params.top_k, scores.shape[-1]), dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.params.top_p < 1.0:
            sorted_scores, order = scores.sort(dim=-1, descending=True)
            probs = sorted_scores.softmax(dim=-1)
            drop = probs.cumsum(dim=-1) - probs >= self.params.top_p
            scores = scores.scatter(-1, order, sorted_scores.masked_fill(drop, float("-inf")))
        return scores
