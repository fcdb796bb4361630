"""Text generation with a loaded Neuron model: through NxDI's HF adapter, or a direct greedy loop.

NxDI's ``HuggingFaceGenerationAdapter`` can drive our model for text: every input our graphs need
(cache position, real-token count, rotary position) is derived from the standard ones it passes
(``position_ids``, ``attention_mask``), see ``model.step_from_nxdi``; our wrapper adds the text values
of the graphs' VL inputs. Images are another matter: the adapter cannot pass ``llava_args`` (image
embeddings, mRoPE ids, rope deltas), so the VL path has its own loop (:mod:`qwen35_neuron.neuron.vl_session`).

:func:`generate_direct` is that kind of loop for text: it calls the application's ``forward`` with
explicit rows and masks, exactly as the CPU runtime's ``GenerationSession`` steps (greedy, EOS
excluded, finished rows idle with an all-zero mask), so its tokens can be compared one to one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..config.neuron_settings import MAX_LENGTH_OPTION
from ..decoding.rows import check_capacity
from ..errors import InputError


@dataclass
class DirectResult:
    tokens: list[list[int]]  # generated ids per prompt, EOS excluded
    ttft_s: float  # wall time of the context-encoding call (host included)
    step_s: list[float] = field(default_factory=list)  # wall time of each token-generation call


def right_padded(prompts: list[list[int]], pad_token_id: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, position_ids) [B, max_len]; pads get position 1, NxDI's pad value."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise InputError("every prompt needs at least one token")
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.int32)
    mask = torch.zeros((len(prompts), width), dtype=torch.int32)
    for row, prompt in enumerate(prompts):
        input_ids[row, : len(prompt)] = torch.tensor(prompt, dtype=torch.int32)
        mask[row, : len(prompt)] = 1
    positions = torch.where(mask.bool(), torch.arange(width, dtype=torch.int32)[None], torch.ones_like(mask))
    return input_ids, mask, positions


def decode_mask(lengths: list[int], active: list[bool]) -> torch.Tensor:
    """TKG attention mask [B, max(lengths) + 1]: ones over each active row's cache, zeros for idle rows."""
    width = max(lengths) + 1
    mask = torch.zeros((len(lengths), width), dtype=torch.int32)
    for row, (length, is_active) in enumerate(zip(lengths, active)):
        if is_active:
            mask[row, : length + 1] = 1
    return mask


def _next_tokens(outputs) -> torch.Tensor:
    tokens = getattr(outputs, "tokens", None)
    logits = getattr(outputs, "logits", None)
    if logits is not None:
        return logits[:, -1, :].argmax(dim=-1)
    return tokens.reshape(tokens.shape[0], -1)[:, -1].to(torch.long)


def check_compiled_capacity(model, prompts: list[list[int]], max_new_tokens: int) -> None:
    """Every prompt and its new tokens fit the compiled cache (``max_length``); any prompt length does
    otherwise."""
    max_length = model.config.settings().max_length
    for prompt in prompts:
        check_capacity(len(prompt), max_new_tokens, max_length, MAX_LENGTH_OPTION)


def context_encode(model, prompts: list[list[int]], max_new_tokens: int,
                   clock: Callable[[], float] = time.perf_counter) -> tuple[object, torch.Tensor, float]:
    """``model.reset()``, then the context encoding of the right-padded prompts in rows 0..n-1 (the
    application runs a prompt past the largest context bucket as several): (outputs, seq_ids, seconds)."""
    if max_new_tokens < 1:
        raise InputError("max_new_tokens must be >= 1")
    check_compiled_capacity(model, prompts, max_new_tokens)
    input_ids, mask, positions = right_padded(prompts)
    seq_ids = torch.arange(len(prompts), dtype=torch.int32)
    model.reset()
    start = clock()
    outputs = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, seq_ids=seq_ids)
    return outputs, seq_ids, clock() - start


def generate_direct(model, prompts: list[list[int]], max_new_tokens: int, eos_token_ids: tuple[int, ...] = (),
                    clock: Callable[[], float] = time.perf_counter) -> DirectResult:
    """Greedy generation for up to ``batch_size`` prompts in rows 0..n-1, one forward per step."""
    outputs, seq_ids, ttft = context_encode(model, prompts, max_new_tokens, clock)
    next_tokens = _next_tokens(outputs).tolist()
    result = DirectResult(tokens=[[] for _ in prompts], ttft_s=ttft)
    lengths = [len(p) for p in prompts]
    active = [True] * len(prompts)
    eos = set(eos_token_ids)
    while True:
        for row, token in enumerate(next_tokens):
            if not active[row]:
                continue
            if token in eos:
                active[row] = False
                continue
            result.tokens[row].append(int(token))
            active[row] = len(result.tokens[row]) < max_new_tokens
        if not any(active):
            return result
        step_ids = torch.tensor([[t if a else 0] for t, a in zip(next_tokens, active)], dtype=torch.int32)
        step_positions = torch.tensor([[n] for n in lengths], dtype=torch.int32)
        start = clock()
        outputs = model(input_ids=step_ids, attention_mask=decode_mask(lengths, active), position_ids=step_positions,
                        seq_ids=seq_ids)
        result.step_s.append(clock() - start)
        next_tokens = _next_tokens(outputs).tolist()
        lengths = [n + int(a) for n, a in zip(lengths, active)]


def generate_with_adapter(model, prompts: list[list[int]], max_new_tokens: int,
                          eos_token_ids: tuple[int, ...] = (), pad_token_id: int = 0) -> list[list[int]]:
    """Greedy generation through NxDI's ``HuggingFaceGenerationAdapter`` (transformers' generate).

    The adapter turns the generation config's top_k / top_p / temperature into each row's sampling
    parameters whatever ``do_sample`` says, and a dynamic on-device sampler samples by them: greedy
    needs top_k 1 there (transformers' default top_k is 50).
    """
    from neuronx_distributed_inference.utils.hf_adapter import HuggingFaceGenerationAdapter

    input_ids, mask, _ = right_padded(prompts, pad_token_id)
    adapter = HuggingFaceGenerationAdapter(model)
    sequences = adapter.generate(input_ids.to(torch.long), attention_mask=mask.to(torch.long),
                                 max_new_tokens=max_new_tokens, do_sample=False, top_k=1, top_p=1.0, temperature=1.0,
                                 eos_token_id=list(eos_token_ids) or None, pad_token_id=pad_token_id)
    out = []
    for row in sequences[:, input_ids.shape[1]:].tolist():
        tokens = []
        for token in row:
            if token in eos_token_ids:
                break
            tokens.append(int(token))
        out.append(tokens)
    return out
