"""Twin of `gdn_decode_fused` (gdn_tkg's op boundary): gates from the raw projections, the
recurrent gated delta rule, then the gated RMSNorm - the model's own pieces, composed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model.gated_delta_rule import recurrent_gated_delta_rule
from ..model.norms import GatedRMSNorm


def fused_decode_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor,
                           b: torch.Tensor, a_log: torch.Tensor, dt_bias: torch.Tensor,
                           z: torch.Tensor, norm_weight: torch.Tensor, state: torch.Tensor,
                           eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """g = -exp(A_log) softplus(a + dt_bias), beta = sigmoid(b); out = GatedRMSNorm(core, z)
    in v's dtype; returns (out, new fp32 state)."""
    g = -a_log.float().exp() * F.softplus(a.float() + dt_bias.float())
    core, new_state = recurrent_gated_delta_rule(q, k, v, g, b.float().sigmoid(), state)
    norm = GatedRMSNorm(norm_weight.shape[0], eps)
    with torch.no_grad():
        norm.weight.copy_(norm_weight.float())
        out = norm(core.to(v.dtype), z)
    return out, new_state
