"""Static-graph check: export one rank's CTE, TKG, speculative verify or MTP draft step with
``torch.export`` for a bucket.

A Neuron graph is traced once per bucket; if ``torch.export`` (strict shapes, no data-dependent
Python) can capture the same forward, so can the Neuron tracer. The exported program takes the
state buffers as inputs and returns the new ones, exactly the aliasing contract.
"""

from __future__ import annotations

import torch
from torch import nn

from .mtp import MtpDrafter
from .state import StateSpec, zero_states
from .text_model import Qwen35TextModel


class _FlatStep(nn.Module):
    """The text model with a flat tensor signature (what tracers want)."""

    def __init__(self, model: Qwen35TextModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, rotary_positions, cache_start, valid_len, seq_ids, *states):
        logits, new_states = self.model(input_ids, rotary_positions, cache_start, valid_len, seq_ids, list(states))
        return (logits, *new_states)


def example_step_inputs(batch: int, length: int, specs: list[StateSpec], vocab_size: int) -> tuple:
    """Representative inputs of one bucket: right-padded rows, fresh context."""
    input_ids = torch.randint(0, vocab_size, (batch, length))
    cache_start = torch.zeros(batch, dtype=torch.long) if length > 1 else torch.full((batch,), 3)
    valid_len = torch.clamp(torch.arange(batch) + length - batch + 1, min=1, max=length)
    rotary = (cache_start[:, None] + torch.arange(length))[None].expand(3, -1, -1).contiguous()
    return (input_ids, rotary, cache_start, valid_len, torch.arange(batch), *zero_states(specs))


def export_step(model: Qwen35TextModel, example_inputs: tuple) -> torch.export.ExportedProgram:
    """Export a CTE (length > 1) or TKG (length 1) step; raises if the graph is not static."""
    return torch.export.export(_FlatStep(model).eval(), example_inputs, strict=False)


class _FlatVerify(nn.Module):
    """The verify step of K+1 slots per row, flat: (logits, hidden, commit, *new states)."""

    def __init__(self, model: Qwen35TextModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, rotary_positions, cache_start, valid_len, seq_ids, *states):
        logits, hidden, commit, new_states = self.model.speculative_step(input_ids, rotary_positions, cache_start,
                                                                         valid_len, seq_ids, list(states))
        return (logits, hidden, commit, *new_states)


class _FlatDraft(nn.Module):
    """The MTP drafter's catch-up + K-1 chain steps, flat: (drafts, new k_cache, new v_cache)."""

    def __init__(self, drafter: MtpDrafter, num_drafts: int) -> None:
        super().__init__()
        self.drafter, self.num_drafts = drafter, num_drafts

    def forward(self, tokens, hidden, cache_start, valid_len, rope_delta, seq_ids, k_cache, v_cache):
        drafts, kv = self.drafter(tokens, hidden, cache_start, valid_len, rope_delta, seq_ids, [k_cache, v_cache],
                                  self.num_drafts)
        return (drafts, *kv)


def export_verify(model: Qwen35TextModel, example_inputs: tuple) -> torch.export.ExportedProgram:
    """Export the speculative verify step (inputs as for :func:`export_step`, length K+1)."""
    return torch.export.export(_FlatVerify(model).eval(), example_inputs, strict=False)


def export_draft(drafter: MtpDrafter, num_drafts: int, example_inputs: tuple) -> torch.export.ExportedProgram:
    """Export the MTP draft step: (tokens, hidden, cache_start, valid_len, rope_delta, seq_ids, k_cache, v_cache)."""
    return torch.export.export(_FlatDraft(drafter, num_drafts).eval(), example_inputs, strict=False)
