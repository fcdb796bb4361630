"""Speculative decoding's host bookkeeping, shared by the CPU loop and the Neuron loop.

The draft count check, the acceptance statistics of verify calls, and the emission rule (a step's
new tokens appended as plain decoding would emit them one by one) - so both backends report and stop
exactly alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputError

MAX_SPECULATIVE_TOKENS = 3


def check_num_drafts(num_drafts: int) -> None:
    if not 1 <= num_drafts <= MAX_SPECULATIVE_TOKENS:
        raise InputError(f"--num-speculative-tokens must be in 1..{MAX_SPECULATIVE_TOKENS}, got {num_drafts}")


@dataclass
class AcceptanceStats:
    """Per depth j (1..K): drafts verified and drafts accepted (with every earlier one)."""

    num_drafts: int
    verify_steps: int = 0  # (row, verify call) pairs
    committed: int = 0  # tokens those calls committed (accepted drafts + 1 each)
    proposed: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.proposed = self.proposed or [0] * self.num_drafts
        self.accepted = self.accepted or [0] * self.num_drafts

    def record(self, drafts_sent: int, commit: int) -> None:
        self.verify_steps += 1
        self.committed += commit
        for depth in range(drafts_sent):
            self.proposed[depth] += 1
            self.accepted[depth] += int(depth < commit - 1)

    @property
    def rate_by_depth(self) -> list[float | None]:
        return [a / p if p else None for a, p in zip(self.accepted, self.proposed)]

    @property
    def tokens_per_step(self) -> float:
        return self.committed / self.verify_steps if self.verify_steps else 0.0

    def as_dict(self) -> dict:
        return {"num_speculative_tokens": self.num_drafts, "verify_steps": self.verify_steps,
                "tokens_per_step": round(self.tokens_per_step, 4),
                "acceptance_by_depth": [None if r is None else round(r, 4) for r in self.rate_by_depth],
                "accepted_by_depth": list(self.accepted), "proposed_by_depth": list(self.proposed)}


def emit(out: list[int], tokens: list[int], eos: set[int], max_new_tokens: int, out_logits: list | None = None,
         logits: list | None = None) -> bool:
    """Append a step's new tokens to a row's output as plain decoding would emit them one by one: stop at
    EOS (excluded) or at ``max_new_tokens``. Returns whether the row goes on."""
    for i, token in enumerate(tokens):
        if out_logits is not None:
            out_logits.append(logits[i])
        if token in eos:
            return False
        out.append(token)
        if len(out) >= max_new_tokens:
            return False
    return True
