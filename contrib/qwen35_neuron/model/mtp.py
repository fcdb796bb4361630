"""The multi-token-prediction (MTP) head of Qwen3.5 and the drafter that chains it K times.

Architecture (the published ``mtp.*`` tensors; vLLM's and SGLang's Qwen3.5 MTP read them the same
way): the embedding of the *next* token and the main model's final normed hidden state at the
current position are each RMS-normed (``pre_fc_norm_embedding``, ``pre_fc_norm_hidden``),
concatenated [embedding | hidden] and projected by ``fc`` (2H -> H); one full-attention decoder
layer (with the main model's MoE, or the dense family's MLP) and a final ``norm`` follow. The
main model's embedding and LM head are shared (no MTP copies). The layer has its own K/V cache.

Drafting (:class:`MtpDrafter`), for a row whose main model just processed positions n .. n+c-1 and
produced hidden states h and greedy tokens y (y_i = the token at position n+i+1):

1. catch-up: the head runs on (embed(y_i), h_i) at positions n+i, i < c, writing its K/V there;
   its output at the last slot gives draft 1 = argmax(lm_head(g));
2. chain: draft j+1 comes from (embed(draft j), g) at position n+c-1+j, g the head's previous
   output, for j = 1 .. K-1.

After prefill c is the prompt length (y: the prompt shifted by one plus the first token); after a
verify step c is the committed length. K/V the chain wrote past a row's committed positions are
rewritten by the next catch-up before any query can see them. Static shapes throughout.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import FULL_ATTENTION, TextConfig
from ..parallel.providers import ParallelProvider
from .decoder import DecoderLayer
from .norms import OffsetRMSNorm
from .model_ops import ModelOps
from .step import StepInputs


class MtpHead(nn.Module):
    """One MTP layer (every published Qwen3.5 checkpoint has one); parameters under their checkpoint
    names after ``mtp.`` (``fc.weight``, ``layers.0.*`` ...)."""

    def __init__(self, config: TextConfig, provider: ParallelProvider, *, moe_impl: str, chunk_size: int,
                 moe_block_size: int = 128) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.pre_fc_norm_embedding = OffsetRMSNorm(hidden, config.rms_norm_eps)
        self.pre_fc_norm_hidden = OffsetRMSNorm(hidden, config.rms_norm_eps)
        self.fc = nn.Linear(2 * hidden, hidden, bias=False)  # replicated on every rank
        self.layers = nn.ModuleList([DecoderLayer(config, 0, provider, moe_impl=moe_impl, chunk_size=chunk_size,
                                                  moe_block_size=moe_block_size, layer_type=FULL_ATTENTION)])
        self.norm = OffsetRMSNorm(hidden, config.rms_norm_eps)

    def forward(self, token_embeds: torch.Tensor, hidden: torch.Tensor, step: StepInputs,
                rotary: tuple[torch.Tensor, torch.Tensor], kv: tuple[torch.Tensor, torch.Tensor],
                ops: ModelOps) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """token_embeds, hidden [B, S, H] -> (normed output [B, S, H], new (k_cache, v_cache))."""
        fused = torch.cat([self.pre_fc_norm_embedding(token_embeds), self.pre_fc_norm_hidden(hidden)], dim=-1)
        out, kv = self.layers[0](self.fc(fused), step, rotary, kv, ops)
        return self.norm(out), kv


class MtpDrafter(nn.Module):
    """K drafts per row from the MTP head, with the main model's embedding, LM head and rotary."""

    def __init__(self, head: MtpHead, embed_tokens: nn.Module, lm_head: nn.Module, rotary: nn.Module,
                 ops: ModelOps) -> None:
        super().__init__()
        self.head = head
        self._shared = [embed_tokens, lm_head, rotary]  # the main model's modules: kept out of this tree
        self.ops = ops

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor, cache_start: torch.Tensor, valid_len: torch.Tensor,
                rope_delta: torch.Tensor, seq_ids: torch.Tensor | None, kv: list[torch.Tensor],
                num_drafts: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """tokens [B, S] (y: the token after each slot's position), hidden [B, S, H] (main model, normed),
        slots at cache positions cache_start + i, the first valid_len [B] real (0: idle row);
        rope_delta [B] moves rotary positions (multimodal rows); kv: the full [k_cache, v_cache] buffers.

        Returns (drafts [B, num_drafts], the K/V buffers with rows ``seq_ids`` updated).
        """
        embed, lm_head, rotary = self._shared
        rows = kv if seq_ids is None else [s.index_select(0, seq_ids) for s in kv]
        capacity = rows[0].shape[2]
        length = tokens.shape[1]
        step = StepInputs.build(cache_start, valid_len, length)
        out, cache = self.head(embed(tokens), hidden, step, rotary(_text_positions(step.positions, rope_delta)),
                               (rows[0], rows[1]), self.ops)
        last = (valid_len - 1).clamp(min=0)
        g = out[torch.arange(out.shape[0]), last][:, None]  # [B, 1, H]
        drafts = [lm_head(g).float().argmax(dim=-1)]  # [B, 1] each
        position = cache_start + valid_len  # the next chain step's cache position (catch-up's last + 1)
        for _ in range(num_drafts - 1):  # static: K is a shape
            live = ((valid_len > 0) & (position < capacity)).to(torch.long)  # no write past the cache
            chain = StepInputs.build(position, live, 1)
            g, cache = self.head(embed(drafts[-1]), g, chain, rotary(_text_positions(chain.positions, rope_delta)),
                                 cache, self.ops)
            drafts.append(lm_head(g).float().argmax(dim=-1))
            position = position + 1
        new_kv = [c.to(full.dtype) for full, c in zip(kv, cache)] if seq_ids is None else \
            [full.index_copy(0, seq_ids, c.to(full.dtype)) for full, c in zip(kv, cache)]
        return torch.cat(drafts, dim=1), new_kv


def _text_positions(positions: torch.Tensor, rope_delta: torch.Tensor) -> torch.Tensor:
    """[3, B, S] rotary ids of text slots: cache position + the row's delta on all three axes."""
    return (positions + rope_delta[:, None])[None].expand(3, -1, -1)
