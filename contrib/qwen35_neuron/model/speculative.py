"""Greedy speculative verification: which drafts a verify step accepts, and the state it commits.

A verify step feeds each row [t_n, d_1 .. d_K] (its last token and K drafts) at cache positions
n .. n+K. Slot i's logits are exactly plain decoding's at position n+i as long as d_1 .. d_i are
the tokens greedy decoding would have produced, so with y = argmax(logits):

    accepted a = the number of leading i with d_(i+1) == y_i      (0 .. K)
    new tokens  = y_0 .. y_a   (the accepted drafts, then the model's own token at the first miss)
    commit      = a + 1 slots  (the cache now holds t_n, d_1 .. d_a)

Attention K/V of the rejected slots stay in the cache past the row's length, invisible (a query
at position p sees slots <= p) and overwritten by the next step. DeltaNet state cannot be left
like that: the verify step keeps its state after every slot and :func:`commit_states` keeps the
one after slot ``commit - 1`` per row. All static tensor ops: no data-dependent Python control flow.
"""

from __future__ import annotations

import torch


def accepted_commit(logits: torch.Tensor, input_ids: torch.Tensor, valid_len: torch.Tensor) -> torch.Tensor:
    """Slots to commit per row [B]: 1 + the accepted drafts (0 for a row without tokens in the call).

    logits [B, S, V]; input_ids [B, S] (slot 0 the row's last token, then its drafts); valid_len [B]
    (1 + drafts sent; a row near its cache capacity sends fewer).
    """
    greedy = logits.argmax(dim=-1)  # [B, S]
    slots = torch.arange(1, input_ids.shape[1], device=input_ids.device)
    match = (greedy[:, :-1] == input_ids[:, 1:]) & (slots[None, :] < valid_len[:, None])
    accepted = match.to(torch.long).cumprod(dim=1).sum(dim=1)
    return torch.where(valid_len > 0, accepted + 1, torch.zeros_like(accepted))


def commit_states(per_slot: torch.Tensor, old: torch.Tensor, commit: torch.Tensor) -> torch.Tensor:
    """per_slot [B, S, ...] (the state after each slot) -> the state after ``commit`` slots [B, ...];
    a row committing 0 slots keeps ``old``."""
    index = (commit - 1).clamp(min=0)
    chosen = per_slot[torch.arange(per_slot.shape[0], device=per_slot.device), index]
    keep = (commit > 0).reshape(-1, *([1] * (old.dim() - 1)))
    return torch.where(keep, chosen, old)
