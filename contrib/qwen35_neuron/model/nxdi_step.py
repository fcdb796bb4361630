"""One step of the Neuron graphs from NxDI's inputs: the traced forward's body, without the SDK.

The traced module of ``qwen35_neuron.neuron.model`` hands NxDI's standard inputs (and the VL inputs of
``qwen35_neuron.neuron.vl_inputs``) to :func:`nxdi_text_step`. It is pure PyTorch so that the graph-bytes
benchmark (``compile_scripts/bench_graph_bytes.py``) runs the very same step on a per-rank model on a
machine without the Neuron SDK.

What the graph derives from NxDI's inputs (:func:`step_from_nxdi`): the cache position of slot 0 is
``position_ids[:, 0]`` (KV write index and attention length come from it, never from a rotary position);
a row's real tokens are its attention-mask ones in context encoding (CTE), "any one" in token generation
(TKG: an all-zero row keeps its state). What the graph reads follows from the shapes alone
(:func:`graph_rows`, :func:`attended_slots`): a graph as wide as the state buffers updates them directly,
and a token-generation graph reads only the cache slots of its bucket.
"""

from __future__ import annotations

import torch

from .mtp import MtpDrafter
from .text_model import Qwen35TextModel


def step_from_nxdi(input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cache_start [B], valid_len [B], rotary positions [3, B, S]) from NxDI's inputs.

    CTE (S > 1, right padded): a row's real tokens are its attention-mask ones. TKG (S = 1): a row
    takes part when its mask has any one (a row with an all-zero mask keeps its state). Text uses
    the same position on the three mRoPE axes: the cache position.
    """
    length = input_ids.shape[1]
    cache_start = position_ids[:, 0].to(torch.long)
    ones = attention_mask.to(torch.long).sum(dim=1)
    valid_len = ones if length > 1 else (ones > 0).to(torch.long)
    slots = torch.arange(length, device=input_ids.device)
    rotary = (cache_start[:, None] + slots)[None].expand(3, -1, -1)
    return cache_start, valid_len, rotary


def graph_rows(seq_ids: torch.Tensor, state_rows: int) -> torch.Tensor | None:
    """The state rows a graph works on; None when the graph has as many rows as the buffers: then NxDI
    passes them in order (its wrapper sorts ``seq_ids`` when it pads a partial batch, vLLM sorts them, our
    wrapper sorts a full batch, and NxDI's own KVCacheManager writes token-generation rows by position
    alone), so the graph updates the buffers directly, with no row gather or scatter. A narrower graph
    (one prefill beside running requests) selects its rows by ``seq_ids``."""
    return None if seq_ids.shape[0] == state_rows else seq_ids.to(torch.long)


def attended_slots(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> int | None:
    """Cache slots a graph's attention reads. A token-generation graph's mask is as wide as its bucket
    (NxDI picks the first bucket wider than the caller's mask, whose width is above every real position,
    and pads the mask to it): the graph reads that many slots. A context-encoding graph's mask is as wide
    as its tokens: it reads the whole cache (a chunk of a chunked prefill attends to all before it)."""
    tokens, width = input_ids.shape[1], attention_mask.shape[1]
    return width if tokens == 1 or width > tokens else None


def vl_step_inputs(model: Qwen35TextModel, input_ids: torch.Tensor, text_rotary: torch.Tensor,
                   vl_inputs: tuple) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(input embeddings or None, rotary ids [3, B, S]) of a call with the VL inputs: CTE
    ``(image_embeds [B, S, H], image_mask [B, S], rotary_position_ids [B, 3, S])``, TKG ``(rope_delta [B],)``.
    Static shapes: a select between two full tensors, no scatter whose size depends on the data."""
    if input_ids.shape[1] == 1:
        (rope_delta,) = vl_inputs
        return None, text_rotary + rope_delta.to(torch.long)[None, :, None]
    image_embeds, image_mask, rotary_ids = vl_inputs
    text = model.embed_tokens(input_ids)
    embeds = torch.where(image_mask[..., None] != 0, image_embeds.to(text.dtype), text)
    return embeds, rotary_ids.to(torch.long).permute(1, 0, 2)


def nxdi_text_step(model: Qwen35TextModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   position_ids: torch.Tensor, seq_ids: torch.Tensor, states: list[torch.Tensor],
                   vl_inputs: tuple = ()) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One CTE or TKG graph: NxDI's inputs and the state buffers -> (logits [B, V], new state buffers)."""
    cache_start, valid_len, rotary = step_from_nxdi(input_ids, attention_mask, position_ids)
    inputs_embeds = None
    if vl_inputs:
        inputs_embeds, rotary = vl_step_inputs(model, input_ids, rotary, vl_inputs)
    return model(input_ids, rotary, cache_start, valid_len, graph_rows(seq_ids, states[0].shape[0]), states,
                 inputs_embeds=inputs_embeds, attended=attended_slots(input_ids, attention_mask))


def verify_step_from_nxdi(attention_mask: torch.Tensor, position_ids: torch.Tensor,
                          width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(cache_start, valid_len, rotary [3, B, K+1], attended slots) of a speculative verify call, in NxDI's
    convention for its speculation graph: slot 0 at ``position_ids[:, 0]``; the attention mask covers the
    cache before the K+1 slots, and NxDI's wrapper pads it to the first token-generation bucket wider than
    mask + K+1 (or the largest, exactly as wide): the graph reads that many cache slots. A row whose mask
    has a one takes part, every slot below the bucket real (the host sends the drafts that fit the cache);
    an all-zero row is idle and keeps its state."""
    cache_start = position_ids[:, 0].to(torch.long)
    attended = attention_mask.shape[1]
    active = (attention_mask.to(torch.long).sum(dim=1) > 0).to(torch.long)
    valid_len = torch.clamp(attended - cache_start, min=0, max=width) * active
    rotary = (cache_start[:, None] + torch.arange(width, device=position_ids.device))[None].expand(3, -1, -1)
    return cache_start, valid_len, rotary, attended


def nxdi_speculative_step(model: Qwen35TextModel, drafter: MtpDrafter, num_drafts: int, input_ids: torch.Tensor,
                          attention_mask: torch.Tensor, position_ids: torch.Tensor, seq_ids: torch.Tensor,
                          states: list[torch.Tensor], mtp_states: list[torch.Tensor]
                          ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The graphs of MTP speculative decoding (greedy, text), told apart by length as NxDI routes them:
    the verify graph (K+1 slots: a row's last token, then its K drafts) and context encoding (a bucket).

    Returns (int32 tokens per row, then every new state buffer, the MTP head's K/V last). Tokens:
    CTE [first token, K drafts]; verify [K+1 greedy tokens, commit, K drafts] - the row's new tokens are
    its first ``commit`` greedy ones, and its DeltaNet state is already committed there. The verify graph's
    main-model attention reads its bucket's cache slots; the MTP head's one layer reads its whole cache
    (its chain may write past the bucket).
    """
    rows = graph_rows(seq_ids, states[0].shape[0])
    width = num_drafts + 1
    if input_ids.shape[1] == width:  # static: the verify graph
        cache_start, valid_len, rotary, attended = verify_step_from_nxdi(attention_mask, position_ids, width)
        logits, hidden, commit, new_states = model.speculative_step(input_ids, rotary, cache_start, valid_len, rows,
                                                                    states, attended)
        greedy = logits.argmax(dim=-1)
        drafts, new_mtp = drafter(greedy, hidden, cache_start, commit, torch.zeros_like(commit), rows, mtp_states,
                                  num_drafts)
        packed = torch.cat([greedy, commit[:, None], drafts], dim=1)
    else:
        cache_start, valid_len, rotary = step_from_nxdi(input_ids, attention_mask, position_ids)
        logits, new_states, hidden = model(input_ids, rotary, cache_start, valid_len, rows, states, return_hidden=True)
        first = logits.argmax(dim=-1)
        slots = torch.arange(input_ids.shape[1], device=input_ids.device)
        following = torch.cat([input_ids[:, 1:], input_ids[:, :1]], dim=1).to(torch.long)  # y_i = token i+1 ...
        following = torch.where(slots[None, :] == (valid_len - 1)[:, None], first[:, None], following)  # ... then
        drafts, new_mtp = drafter(following, hidden, cache_start, valid_len, torch.zeros_like(valid_len), rows,
                                  mtp_states, num_drafts)
        packed = torch.cat([first[:, None], drafts], dim=1)
    return packed.to(torch.int32), list(new_states) + list(new_mtp)
