"""Context encoding past the largest bucket on the NxDI graphs: one long prefill as chunks (host side).

NxDI compiles one context-encoding (CTE) graph per bucket, pads a call up to the first bucket that
holds it and refuses a wider one; its own chunked prefill (``chunked_prefill_config``) is for the
block KV layout and its base class raises for it. Our CTE graphs need none of that: each row's
cache position is ``position_ids[:, 0]``, its attention reads the KV cache up to there and its
DeltaNet layers start from the carried conv and recurrent state (a row restarts only at position 0),
so the same graphs serve the first chunk and every later one.

So the application (``Qwen35MoeForCausalLM._get_model_outputs``) cuts a context encoding wider than
the largest bucket into rounds (:func:`~qwen35_neuron.decoding.buckets.prefill_rounds` over each row's
real tokens, the CPU runtime's schedule): round k runs chunk k of every row that has one, with the
row's own token ids, mask, absolute positions and VL inputs cut at the same slots, through NxDI's own
routing, wrapper padding and (in CPU mode) state copy-back. A row whose prompt is done takes no part
in the later rounds. Each row's output (token or logits) is the one of its last chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..decoding.buckets import Chunk, chunk_window, prefill_rounds
from ..errors import InputError
from .vl_inputs import CTE_VL_SEQ_DIMS

NXDI_PAD_POSITION = 1  # what NxDI's wrapper pads position ids with (our graphs read only slot 0)


@dataclass(frozen=True)
class ChunkRound:
    """One CTE call of a chunked context encoding."""

    rows: torch.Tensor  # [n] long: the caller's rows (batch indices) in this call, in order
    last: list[bool]  # per row: this call runs its last chunk
    input_ids: torch.Tensor  # [n, w]
    attention_mask: torch.Tensor  # [n, w]: ones over the chunk's real tokens
    position_ids: torch.Tensor  # [n, w]: absolute cache positions of the slots
    llava_args: list[torch.Tensor]  # the CTE VL inputs cut the same way (empty for text)


def refuse_continued_prefill(attention_mask: torch.Tensor, position_ids: torch.Tensor,
                             buckets: Sequence[int]) -> None:
    """For ``deltanet_kernel 'nkilib'``: nki-library's gdn_cte starts every prefill from a zero state,
    so a context encoding may not continue a row (a chunk of a prompt past the largest bucket, or a row
    whose prefill starts past position 0). Checked before any graph runs, so no row's state changes."""
    lengths = attention_mask.to(torch.long).sum(dim=1)
    continued = (lengths > 0) & (position_ids[:, 0] > 0)
    longest = int(lengths.max()) if lengths.numel() else 0
    if longest > max(buckets) or bool(continued.any()):
        what = (f"a prompt of {longest} tokens is longer than the largest of context_buckets ({max(buckets)}) "
                f"and would be prefilled in chunks" if longest > max(buckets) else
                f"row(s) {continued.nonzero().flatten().tolist()} continue a prefill past position 0")
        raise InputError(f"deltanet_kernel 'nkilib' (nki-library's gdn_cte) starts every prefill from a zero "
                         f"state, but {what}: compile with deltanet_kernel 'ours' or context_buckets that hold "
                         f"the whole prompt")


def chunk_rounds(input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                 llava_args: Sequence[torch.Tensor], buckets: Sequence[int], avoid: set[int]) -> list[ChunkRound]:
    """The rounds of a right-padded context encoding [B, S] whose S exceeds the largest bucket, none
    sent at a width in ``avoid`` (widths NxDI routes elsewhere). A row without real tokens takes part
    in the first round only (it keeps its state there)."""
    lengths = [int(n) for n in attention_mask.to(torch.long).sum(dim=1).tolist()]
    real = [i for i, n in enumerate(lengths) if n > 0]
    rounds = [[(real[j], chunk) for j, chunk in members]
              for members in (prefill_rounds([lengths[i] for i in real], tuple(buckets)) if real else [[]])]
    rounds[0] = sorted(rounds[0] + [(i, Chunk(0, 0, 0)) for i, n in enumerate(lengths) if n == 0])
    final = {i: k for k, members in enumerate(rounds) for i, _ in members}  # each row's last round
    return [_round(members, [final[i] == k for i, _ in members], input_ids, attention_mask, position_ids, llava_args,
                   chunk_width(max(chunk.length for _, chunk in members), avoid))
            for k, members in enumerate(rounds)]


def chunk_width(tokens: int, avoid: set[int]) -> int:
    """The slots a call of ``tokens`` real tokens is sent with: the tokens, right padded past any width
    NxDI would route to another graph (one slot: token generation; the verify length)."""
    width = max(tokens, 1)
    while width in avoid:
        width += 1
    return width


def _round(members: list[tuple[int, Chunk]], last: list[bool], input_ids: torch.Tensor, attention_mask: torch.Tensor,
           position_ids: torch.Tensor, llava_args: Sequence[torch.Tensor], width: int) -> ChunkRound:
    def cut(full: torch.Tensor, dim: int = 0, value: float = 0) -> torch.Tensor:
        return torch.stack([chunk_window(full[i], dim, chunk, width, value) for i, chunk in members])

    return ChunkRound(
        rows=torch.tensor([i for i, _ in members], dtype=torch.long), last=last,
        input_ids=cut(input_ids), attention_mask=cut(attention_mask), position_ids=cut(position_ids, 0, NXDI_PAD_POSITION),
        llava_args=[cut(arg, dim - 1) for arg, dim in zip(llava_args, CTE_VL_SEQ_DIMS)],
    )


def run_rounds(rounds: list[ChunkRound], run: Callable[[ChunkRound], tuple], carry: Callable[[object], None],
               per_row_outputs: int) -> tuple:
    """Run ``rounds`` with ``run(round) -> (outputs, on_neuron)`` (NxDI's routing for one call). Between
    rounds on the host (NxDI's CPU mode) ``carry(outputs)`` hands the new state to the next call (NxDI's
    copy-back); on a device the graphs share the aliased state buffers. Returns the last round's (outputs, on_neuron) with the first
    ``per_row_outputs`` outputs (tokens, logits) assembled from each row's last chunk, in caller order."""
    batch = sum(sum(r.last) for r in rounds)
    heads: list[torch.Tensor | None] = [None] * per_row_outputs
    outputs, on_neuron = None, False
    for k, chunk_round in enumerate(rounds):
        outputs, on_neuron = run(chunk_round)
        if k + 1 < len(rounds) and not on_neuron:
            carry(outputs)
        parts = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs[:per_row_outputs])
        finished = chunk_round.rows[torch.tensor(chunk_round.last, dtype=torch.bool)]
        for h, part in enumerate(parts):
            if heads[h] is None:
                heads[h] = part.new_zeros((batch, *part.shape[1:]))
            heads[h][finished] = part[torch.tensor(chunk_round.last, dtype=torch.bool)]
    if isinstance(outputs, torch.Tensor):
        return heads[0], on_neuron
    return [*heads, *list(outputs)[per_row_outputs:]], on_neuron
