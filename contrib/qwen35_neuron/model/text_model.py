"""The Qwen3.5 text model of one rank, with state in -> state out.

One forward serves both graphs: context encoding (CTE: S = bucket length, right padded) and token
generation (TKG: S = 1). ``seq_ids`` picks the rows of the full state buffers this call works on,
so a request can start in row b without touching any other row; the returned buffers are the full
ones with only those rows changed (the Neuron wrapper aliases each of them to its input).
:meth:`Qwen35TextModel.speculative_step` is the verify graph of speculative decoding (S = K+1
slots per row, each row committed at its accepted length, see :mod:`.speculative`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import TextConfig
from ..parallel.providers import ParallelProvider
from .decoder import DecoderLayer
from .norms import OffsetRMSNorm
from .model_ops import TORCH_OPS, ModelOps
from .rotary import MultimodalRotary
from .speculative import accepted_commit, commit_states
from .step import StepInputs


class Qwen35TextModel(nn.Module):
    def __init__(self, config: TextConfig, provider: ParallelProvider, *, moe_impl: str = "eager",
                 chunk_size: int = 64, ops: ModelOps = TORCH_OPS, moe_block_size: int = 128) -> None:
        super().__init__()
        self.config = config
        self.ops = ops
        self.embed_tokens = provider.embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            DecoderLayer(config, i, provider, moe_impl=moe_impl, chunk_size=chunk_size, moe_block_size=moe_block_size)
            for i in range(config.num_hidden_layers)
        )
        self.norm = OffsetRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = provider.lm_head(config.hidden_size, config.vocab_size)
        self.rotary = MultimodalRotary(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        rotary_positions: torch.Tensor,
        cache_start: torch.Tensor,
        valid_len: torch.Tensor,
        seq_ids: torch.Tensor | None,
        states: list[torch.Tensor],
        inputs_embeds: torch.Tensor | None = None,
        all_logits: bool = False,
        attended: int | None = None,
        return_hidden: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]] | tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """input_ids [B, S]; rotary_positions [3, B, S]; cache_start, valid_len, seq_ids [B] (None: the
        call covers every row of the buffers, in order - no gather/scatter);
        states: the full buffers in :func:`state_specs` order; inputs_embeds [B, S, H] replaces the
        token embeddings (vision features already scattered in); attended: cache slots attention reads
        (a token-generation bucket; None: all), every real slot's position must lie below it.

        Returns (logits [B, V] at each row's last real token, or [B, S, V] with ``all_logits``;
        the full state buffers with rows ``seq_ids`` updated; with ``return_hidden`` also the final
        normed hidden states [B, S, H], what the MTP head drafts from).
        """
        step = StepInputs.build(cache_start, valid_len, input_ids.shape[1], attended)
        rows = states if seq_ids is None else [s.index_select(0, seq_ids) for s in states]
        hidden, new_rows = self._layer_stack(input_ids, rotary_positions, step, rows, inputs_embeds)
        normed = self.norm(hidden)
        if not all_logits:
            last = (valid_len - 1).clamp(min=0)
            logits = self.lm_head(normed[torch.arange(normed.shape[0]), last]).float()
        else:
            logits = self.lm_head(normed).float()
        outputs = (logits, _into_buffers(states, new_rows, seq_ids))
        return (*outputs, normed) if return_hidden else outputs

    def speculative_step(
        self,
        input_ids: torch.Tensor,
        rotary_positions: torch.Tensor,
        cache_start: torch.Tensor,
        valid_len: torch.Tensor,
        seq_ids: torch.Tensor | None,
        states: list[torch.Tensor],
        attended: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Verify K drafts per row: input_ids [B, K+1] = [last token, drafts] at cache positions
        cache_start .. cache_start+K; valid_len [B] (1 + drafts sent, 0: idle row); attended: cache
        slots attention reads (a token-generation bucket; None: all), above every real slot's position.

        Returns (logits [B, K+1, V], final normed hidden [B, K+1, H], commit [B] = 1 + accepted drafts,
        the full state buffers with each row's DeltaNet state after exactly its committed slots).
        """
        step = StepInputs.build(cache_start, valid_len, input_ids.shape[1], attended, speculative=True)
        rows = states if seq_ids is None else [s.index_select(0, seq_ids) for s in states]
        hidden, per_slot = self._layer_stack(input_ids, rotary_positions, step, rows, None)
        normed = self.norm(hidden)
        logits = self.lm_head(normed).float()
        commit = accepted_commit(logits, input_ids, valid_len)
        linear = [layer.is_linear for layer in self.layers for _ in range(2)]
        new_rows = [commit_states(new, old, commit) if is_linear else new
                    for new, old, is_linear in zip(per_slot, rows, linear)]
        return logits, normed, commit, _into_buffers(states, new_rows, seq_ids)

    def _layer_stack(self, input_ids: torch.Tensor, rotary_positions: torch.Tensor, step: StepInputs,
                     rows: list[torch.Tensor], inputs_embeds: torch.Tensor | None) -> tuple[torch.Tensor, list]:
        """Embeddings through every decoder layer: (last hidden [B, S, H], the layers' new states in order)."""
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        rotary = self.rotary(rotary_positions)
        new_rows: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            hidden, layer_states = layer(hidden, step, rotary, (rows[2 * i], rows[2 * i + 1]), self.ops)
            new_rows.extend(layer_states)
        return hidden, new_rows


def _into_buffers(states: list[torch.Tensor], new_rows: list[torch.Tensor],
                  seq_ids: torch.Tensor | None) -> list[torch.Tensor]:
    """The full state buffers with rows ``seq_ids`` replaced (None: every row took part, in order)."""
    if seq_ids is None:
        return [row.to(full.dtype) for full, row in zip(states, new_rows)]
    return [full.index_copy(0, seq_ids, row.to(full.dtype)) for full, row in zip(states, new_rows)]
