"""The Qwen3.5 text model of one rank, with state in -> state out.

One forward serves both graphs: context encoding (CTE: S = bucket length, right padded) and token
generation (TKG: S = 1, or k for speculation). ``seq_ids`` picks the rows of the full state buffers
this call works on, so a request can start in row b without touching any other row; the returned
buffers are the full ones with only those rows changed (the Neuron wrapper aliases each of them to
its input).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import TextConfig
from ..parallel.providers import ParallelProvider
from .decoder import DecoderLayer
from .norms import OffsetRMSNorm
from .ops import TORCH_OPS, ModelOps
from .rotary import MultimodalRotary
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
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """input_ids [B, S]; rotary_positions [3, B, S]; cache_start, valid_len, seq_ids [B] (None: the
        call covers every row of the buffers, in order - no gather/scatter);
        states: the full buffers in :func:`state_specs` order; inputs_embeds [B, S, H] replaces the
        token embeddings (vision features already scattered in); attended: cache slots attention reads
        (a token-generation bucket; None: all), every real slot's position must lie below it.

        Returns (logits [B, V] at each row's last real token, or [B, S, V] with ``all_logits``;
        the full state buffers with rows ``seq_ids`` updated).
        """
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        step = StepInputs.build(cache_start, valid_len, input_ids.shape[1], attended)
        rotary = self.rotary(rotary_positions)
        rows = states if seq_ids is None else [s.index_select(0, seq_ids) for s in states]
        new_rows: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            hidden, layer_states = layer(hidden, step, rotary, (rows[2 * i], rows[2 * i + 1]), self.ops)
            new_rows.extend(layer_states)
        if not all_logits:
            last = (valid_len - 1).clamp(min=0)
            hidden = hidden[torch.arange(hidden.shape[0]), last][:, None]
        logits = self.lm_head(self.norm(hidden)).float()
        if seq_ids is None:  # every row took part: the new rows are the new buffers
            return (logits if all_logits else logits[:, 0]), [row.to(full.dtype) for full, row in zip(states, new_rows)]
        new_states = [full.index_copy(0, seq_ids, row.to(full.dtype)) for full, row in zip(states, new_rows)]
        return (logits if all_logits else logits[:, 0]), new_states
