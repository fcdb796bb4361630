"""Router logits in fp32 from the stored (bf16) weights: the twin of the ``router_logits`` NKI kernel.

The MoE router picks experts from these logits; fp32 keeps a near-tie between experts from flipping
with the bf16 rounding of a matmul (a K+1-token verify step must pick the experts plain decoding
picks). TensorE forms bf16 x bf16 products in fp32 natively, so the kernel reads the weights as
stored; in PyTorch the twin casts both operands.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fp32_router_logits(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [N, H]; weight [E, H] -> logits [N, E] in fp32."""
    return F.linear(x.float(), weight.float())
