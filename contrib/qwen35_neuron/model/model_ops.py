"""The hot ops a layer calls, as a swappable table.

Layers never call a kernel directly: they call ``ops.<name>``. The default table is the PyTorch
twins (dense / simulated-TP backends); ``qwen35_neuron.kernels`` builds tables whose entries run our
NKI kernels, through the CPU emulator (backend ``nki-sim``) or on Trainium2. Every entry of a table
must equal the twin it replaces - the kernel tests prove it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .attention_core import causal_gqa_attention
from .causal_conv import causal_conv1d
from .gated_delta_rule import chunked_gated_delta_rule, recurrent_gated_delta_rule
from .router_logits import fp32_router_logits
from .selected_experts import selected_experts


@dataclass(frozen=True)
class ModelOps:
    """Signatures are those of the twins named as defaults."""

    gdr_prefill: Callable = chunked_gated_delta_rule  # (q, k, v, g, beta, state, chunk_size) -> (o, state)
    gdr_decode: Callable = recurrent_gated_delta_rule  # (q, k, v, g, beta, state) -> (o, state)
    # Optional decode at gdn_tkg's boundary (gates from raw a/b, gated RMSNorm folded in); twin:
    # model.deltanet.gated_decode. None: decode uses gdr_decode and the layer's own gates and norm.
    gdr_decode_gated: Callable | None = None  # (q, k, v, a, b, A_log, dt_bias, z, w, state, eps) -> (o, state)
    causal_conv: Callable = causal_conv1d  # (x, conv_state, weight, valid_len) -> (y, state)
    attention: Callable = causal_gqa_attention  # (q, k, v, q_positions, scale) -> o
    router_logits: Callable = fp32_router_logits  # (x [N, H], weight [E, H]) -> fp32 logits [N, E]
    # routed experts of a decode step (fewer (token, expert) pairs than experts): the chosen experts' weights only
    moe_decode: Callable = selected_experts  # (x, weights, ids, gate_up_proj, down_proj) -> [N, H]
    name: str = "torch"


TORCH_OPS = ModelOps()
