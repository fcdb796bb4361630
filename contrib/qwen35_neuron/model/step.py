"""What every layer needs to know about one forward call (CTE bucket or TKG step).

A call processes S token slots per row. Row b's real tokens are the first ``valid_len[b]`` slots
(right padding); they sit at cache positions ``cache_start[b] + i``. Rotary positions are separate
(multimodal RoPE moves them, never the cache index). ``valid_len`` 0 marks a row that takes no part
in this call: its state must come out unchanged.

A speculative verify call (``speculative``, static) keeps every DeltaNet layer's state after each
slot instead of after the last real one, so the caller can commit each row at the length its
drafts were accepted to (see :mod:`.speculative`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepInputs:
    cache_start: torch.Tensor  # [B] long: cache position of slot 0
    valid_len: torch.Tensor  # [B] long: real tokens in this call
    positions: torch.Tensor  # [B, S] long: cache position of each slot
    valid: torch.Tensor  # [B, S] bool: slot holds a real token
    continuing: torch.Tensor  # [B] bool: the row keeps its state (else it resets: a new request)
    # cache slots attention reads (static): a token-generation bucket, None = the whole cache. The
    # caller promises every real slot's position is below it.
    attended: int | None = None
    speculative: bool = False  # static: DeltaNet layers return their state after every slot

    @classmethod
    def build(cls, cache_start: torch.Tensor, valid_len: torch.Tensor, length: int,
              attended: int | None = None, speculative: bool = False) -> "StepInputs":
        slots = torch.arange(length, device=cache_start.device)
        return cls(
            cache_start=cache_start,
            valid_len=valid_len,
            positions=cache_start[:, None] + slots,
            valid=slots[None, :] < valid_len[:, None],
            # a row resets only when a new request starts in it (real tokens at cache position 0);
            # a row with no tokens in this call keeps its state whatever its position says
            continuing=(cache_start > 0) | (valid_len == 0),
            attended=attended,
            speculative=speculative,
        )

    @property
    def length(self) -> int:
        return self.positions.shape[1]
