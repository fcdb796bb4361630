"""The vision-language inputs of the text graphs, beside NxDI's seven standard ones (host side).

NxD traces without keywords, so extra graph inputs are positional. NxDI's application passes its
``llava_args`` list right after ``adapter_ids`` (slot 7 on) to whichever graph it picks, so the VL
inputs live there:

    CTE  7 image_embeds [B, S, H] (model dtype)   8 image_mask [B, S] int32   9 rotary_position_ids [B, 3, S] int32
    TKG  7 rope_delta [B] int32

The graph computes ``where(image_mask, image_embeds, embed_tokens(input_ids))`` (static shapes, no
data-dependent scatter) and, in TKG, rotary position = cache position + ``rope_delta`` (KV write
index and attention length stay the cache position).

Every VL tensor is batch-first - also the mRoPE ids, which the CPU runtime keeps as [3, B, S]: NxDI's
wrapper slices and pads every input along dim 0 (``ctx_batch_size`` loops, partial batches), which
would cut the three mRoPE axes instead of the rows of a [3, B, S] tensor.

Text-only calls carry ``image_mask`` zeros, the text positions and ``rope_delta`` zeros, which give
exactly the outputs of a graph without these inputs; :func:`text_inputs` builds them, so callers that
know nothing of images (NxDI's HF adapter, :func:`~qwen35_neuron.neuron.generation.generate_direct`)
run the same compiled graphs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError

NXDI_STANDARD_INPUTS = 7  # input_ids, attention_mask, position_ids, seq_ids, sampling_params, prev_hidden, adapter_ids
CTE_VL_INPUTS = ("image_embeds", "image_mask", "rotary_position_ids")
CTE_VL_SEQ_DIMS = (1, 1, 2)  # the token-slot dim of each CTE VL input (cut per chunk, padded per bucket)
TKG_VL_INPUTS = ("rope_delta",)


def vl_input_names(is_cte: bool) -> tuple[str, ...]:
    return CTE_VL_INPUTS if is_cte else TKG_VL_INPUTS


def text_rotary_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """[B, 3, S] int32: slot i of row b at cache position ``position_ids[b, 0] + i`` on all three axes,
    exactly what the graph derives for text (``model.step_from_nxdi``)."""
    batch, length = position_ids.shape
    ids = position_ids[:, :1].to(torch.int32) + torch.arange(length, dtype=torch.int32)
    return ids[:, None, :].expand(batch, 3, length).contiguous()


def text_inputs(is_cte: bool, position_ids: torch.Tensor, hidden_size: int, dtype: torch.dtype) -> tuple:
    """The VL inputs of a call without images, for padded ``position_ids`` [B, S]."""
    batch, length = position_ids.shape
    if not is_cte:
        return (torch.zeros(batch, dtype=torch.int32),)
    return (torch.zeros(batch, length, hidden_size, dtype=dtype), torch.zeros(batch, length, dtype=torch.int32),
            text_rotary_ids(position_ids))


def cte_inputs(image_embeds: torch.Tensor, image_mask: torch.Tensor, rotary_positions: torch.Tensor) -> list:
    """``llava_args`` of a CTE call: image embeddings (zeros at text tokens) [B, S, H], image-token mask
    [B, S] and the mRoPE ids in the CPU runtime's [3, B, S] layout."""
    if rotary_positions.dim() != 3 or rotary_positions.shape[0] != 3:
        raise InputError(f"rotary_positions must be [3, B, S], got {tuple(rotary_positions.shape)}")
    return [image_embeds, image_mask.to(torch.int32), rotary_positions.permute(1, 0, 2).to(torch.int32).contiguous()]


def tkg_inputs(rope_deltas: Sequence[int]) -> list:
    """``llava_args`` of a TKG call: each row's rope delta (0 for text requests)."""
    return [torch.tensor([int(d) for d in rope_deltas], dtype=torch.int32)]


def _fit_length(tensor: torch.Tensor, dim: int, length: int) -> torch.Tensor:
    """Right-pad with zeros or cut ``dim`` to ``length`` (NxDI may re-bucket a CTE chunk)."""
    extra = length - tensor.shape[dim]
    if extra < 0:
        return tensor.narrow(dim, 0, length)
    if extra == 0:
        return tensor
    pad = [0, 0] * (tensor.dim() - 1 - dim) + [0, extra]
    return F.pad(tensor, pad, value=0)


def fit_inputs(is_cte: bool, given: Sequence[torch.Tensor], position_ids: torch.Tensor, hidden_size: int,
               dtype: torch.dtype) -> tuple:
    """The VL inputs for padded standard inputs: ``given`` ones fitted to the bucket length and cast to
    the traced dtypes, or the text inputs when none were given."""
    if not given:
        return text_inputs(is_cte, position_ids, hidden_size, dtype)
    names = vl_input_names(is_cte)
    if len(given) != len(names):
        graph = "context-encoding" if is_cte else "token-generation"
        raise InputError(f"the {graph} graph takes llava_args {list(names)}, got {len(given)} tensor(s): build them "
                         "with qwen35_neuron.neuron.vl_inputs.cte_inputs / tkg_inputs")
    if not is_cte:
        return (given[0].to(torch.int32),)
    length = position_ids.shape[1]
    embeds, mask, rotary = given
    dtypes = (dtype, torch.int32, torch.int32)
    return tuple(_fit_length(t.to(d), dim, length) for t, d, dim in zip((embeds, mask, rotary), dtypes, CTE_VL_SEQ_DIMS))


def batch_order(seq_ids: torch.Tensor, max_batch_size: int) -> torch.Tensor:
    """Where each row of a batch padded the way NxDI pads a partial batch comes from: the caller's
    rows, then row 0 repeated for the missing ``seq_ids``, sorted by seq id."""
    given = [int(s) for s in seq_ids.tolist()]
    filled = given + [s for s in range(max_batch_size) if s not in given]
    return torch.sort(torch.tensor(filled)).indices


def pad_rows(tensors: Sequence[torch.Tensor], order: torch.Tensor, batch_size: int) -> tuple:
    """Each tensor padded to ``batch_size`` rows by repeating its first row, then put in ``order``."""
    out = []
    for tensor in tensors:
        missing = batch_size - tensor.shape[0]
        if missing > 0:
            tensor = torch.cat([tensor, tensor[:1].expand(missing, *tensor.shape[1:])])
        out.append(tensor.index_select(0, order))
    return tuple(out)


def full_batch_order(seq_ids: torch.Tensor, state_rows: int) -> torch.Tensor | None:
    """The sorting permutation of a call that covers every state row in another order, else None.
    Such a graph updates the buffers row by row in input order (``model.nxdi_step.graph_rows``), as
    NxDI's own KV cache does: the rows must come sorted."""
    if seq_ids.shape[0] != state_rows:
        return None
    order = torch.argsort(seq_ids.to(torch.long))
    return None if torch.equal(order, torch.arange(state_rows)) else order


def restore_order(outputs, order: torch.Tensor, per_request: int):
    """Outputs of a call run with rows sorted by ``order``, back in the caller's row order: a tensor, or
    the first ``per_request`` entries of a list (the rest are the state buffers, not rows of the call)."""
    inverse = torch.argsort(order)
    if isinstance(outputs, torch.Tensor):
        return outputs.index_select(0, inverse)
    return [o.index_select(0, inverse) if i < per_request else o for i, o in enumerate(outputs)]


@dataclass(frozen=True)
class PaddedCall:
    """A partial batch as NxDI pads it (rows in its sorted order): which rows are its fillers, and the
    VL inputs padded the same way."""

    filler_rows: torch.Tensor  # [B] bool
    vl_inputs: tuple

    def complete(self, standard: Sequence[torch.Tensor]) -> tuple:
        """The graph inputs: the fillers' attention mask zeroed (no real token: their state is kept),
        then the VL inputs."""
        mask = standard[1].masked_fill(self.filler_rows[:, None], 0)
        return (*standard[:1], mask, *standard[2:], *self.vl_inputs)
