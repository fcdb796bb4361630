"""MTP speculative decoding with a compiled model (``NeuronSettings.num_speculative_tokens`` = K): the
host loop around the CTE and verify graphs of :meth:`NeuronQwen35MoeModel.speculative_forward`.

Each call returns packed int32 tokens (no logits cross to the host): CTE [first token, K drafts];
verify [K+1 greedy tokens, commit, K drafts]. A row's new tokens after a verify call are its first
``commit`` greedy tokens; the graph has already committed the DeltaNet state and drafted the next K
(same contract as the CPU runtime, :mod:`qwen35_neuron.runtime.speculative`; both share the acceptance
statistics and emission rule of :mod:`qwen35_neuron.decoding.acceptance`). Greedy, text prompts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import InputError
from ..decoding.acceptance import AcceptanceStats, check_num_drafts, emit
from .generation import context_encode


@dataclass
class SpeculativeDirectResult:
    tokens: list[list[int]]  # generated ids per prompt, EOS excluded
    acceptance: AcceptanceStats
    ttft_s: float
    step_s: list[float] = field(default_factory=list)  # wall time of each verify call


def _packed(outputs) -> torch.Tensor:
    """Output 0 of our graphs: NxDI's application hands it back as ``tokens`` (``_construct_output``; also as
    ``logits``, since the model has no on-device sampler)."""
    return outputs.tokens.reshape(outputs.tokens.shape[0], -1).to(torch.long)


def verify_inputs(lengths: list[int], next_tokens: list[int], drafts: torch.Tensor, active: list[bool],
                  max_length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, position_ids) of one verify call: [last token, drafts] at each row's
    cache positions length .. length+K; the attention mask covers the cache before them, NxDI's convention
    for its speculation graph (its wrapper picks the first bucket wider than mask + K+1 slots and refuses
    one past ``max_length``). Near the end of the cache the mask is cut at ``max_length`` - (K+1) columns,
    the widest NxDI takes: the bucket is then the whole cache, and our graph asks of a row's mask only
    whether it has a one (it attends by cache position). Idle rows get an all-zero mask (their state stays)."""
    batch, width = len(lengths), drafts.shape[1] + 1
    columns = min(max(lengths), max_length - width)
    input_ids = torch.zeros(batch, width, dtype=torch.int32)
    mask = torch.zeros(batch, columns, dtype=torch.int32)
    for row, (length, token, is_active) in enumerate(zip(lengths, next_tokens, active)):
        if is_active:
            input_ids[row, 0] = token
            input_ids[row, 1:] = drafts[row]
            mask[row, : min(length, columns)] = 1
    positions = torch.tensor(lengths, dtype=torch.int32)[:, None] + torch.arange(width, dtype=torch.int32)
    return input_ids, mask, positions


def generate_speculative_direct(model, prompts: list[list[int]], max_new_tokens: int, num_drafts: int,
                                eos_token_ids: tuple[int, ...] = (),
                                clock: Callable[[], float] = time.perf_counter) -> SpeculativeDirectResult:
    """Greedy generation for up to ``batch_size`` prompts in rows 0..n-1 with a model compiled with
    ``num_speculative_tokens == num_drafts``."""
    check_num_drafts(num_drafts)
    settings = model.config.settings()
    if settings.num_speculative_tokens != num_drafts:
        raise InputError(f"the model was compiled with num_speculative_tokens={settings.num_speculative_tokens}, "
                         f"not {num_drafts}: recompile or ask for {settings.num_speculative_tokens} drafts")
    max_length = settings.max_length
    outputs, seq_ids, ttft = context_encode(model, prompts, max_new_tokens, clock)
    packed = _packed(outputs)
    result = SpeculativeDirectResult([[] for _ in prompts], AcceptanceStats(num_drafts), ttft_s=ttft)
    eos = set(eos_token_ids)
    lengths = [len(p) for p in prompts]
    next_tokens, drafts = packed[:, 0].tolist(), packed[:, 1:]
    active = [emit(result.tokens[row], [next_tokens[row]], eos, max_new_tokens) for row in range(len(prompts))]
    while True:
        active = [a and n < max_length for a, n in zip(active, lengths)]  # a full cache finishes the row
        if not any(active):
            return result
        step_ids, step_mask, step_positions = verify_inputs(lengths, next_tokens, drafts, active, max_length)
        start = clock()
        packed = _packed(model(input_ids=step_ids, attention_mask=step_mask, position_ids=step_positions,
                               seq_ids=seq_ids))
        result.step_s.append(clock() - start)
        width = num_drafts + 1
        greedy, commit, drafts = packed[:, :width], packed[:, width].tolist(), packed[:, width + 1:]
        for row in range(len(prompts)):
            if not active[row]:
                continue
            result.acceptance.record(min(width, max_length - lengths[row]) - 1, commit[row])
            tokens = greedy[row, : commit[row]].tolist()
            lengths[row] += commit[row]
            next_tokens[row] = tokens[-1]
            active[row] = emit(result.tokens[row], tokens, eos, max_new_tokens)
