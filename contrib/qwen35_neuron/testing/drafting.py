"""A tiny checkpoint whose MTP head drafts well, so tests and benchmarks exercise accepted drafts.

Random MTP weights draft almost nothing the main model accepts. Here both models are steered
towards one next-token rule, t -> f(t) (a fixed random permutation; the identity when the
embeddings are tied), while the main model keeps all its context-dependent layers:

- main model: the LM head rows are the embeddings permuted by f (untied), so the final hidden
  state's dominant part, the current token's embedding, votes for f(t); every token-mixer and
  feed-forward output projection is scaled by ``mix_scale`` (0 < s <= 1), so the context (DeltaNet
  and attention state, the MoE/MLP) moves the logits and decides the tokens where f(t) is not far
  ahead - those are the rejected drafts;
- MTP head: ``fc`` passes the normed embedding of the next token through ([I | 0]), the MTP layer's
  attention and feed-forward outputs are zero (its residual carries the embedding), and its final
  norm equals the main model's, so it drafts f(next token): the main model's choice whenever the
  context does not override it.

Everything is written through the real checkpoint path (config.json + safetensors), and the
speculative output must still equal plain greedy decoding token for token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .tiny import build_tiny_checkpoint, tiny_config_dict

_OUTPUT_PROJECTIONS = ("linear_attn.out_proj.weight", "self_attn.o_proj.weight", "mlp.experts.down_proj",
                       "mlp.shared_expert.down_proj.weight", "mlp.down_proj.weight")


def build_drafting_checkpoint(directory: str | Path, config_dict: dict[str, Any] | None = None, *, seed: int = 0,
                              mix_scale: float = 0.25) -> Path:
    """A tiny checkpoint (one safetensors file, one MTP layer) whose MTP head drafts the main model's
    next-token rule; ``mix_scale`` sets how much the context overrides it (smaller: more accepted)."""
    if not 0 < mix_scale <= 1:
        raise ValueError(f"mix_scale must be in (0, 1], got {mix_scale}")
    directory = build_tiny_checkpoint(directory, config_dict or tiny_config_dict(), seed=seed, mtp_layers=1)
    path = directory / "model.safetensors"
    tensors = load_file(str(path))
    embed_key = next(k for k in tensors if k.endswith("embed_tokens.weight") and not k.startswith("mtp."))
    embed = tensors[embed_key]
    vocab, hidden = embed.shape
    follow = torch.randperm(vocab, generator=torch.Generator().manual_seed(seed + 1))  # f(t) = follow[t]
    if "lm_head.weight" in tensors:  # row f(t) = embedding of t, so argmax lm_head(e_t) = f(t)
        head = torch.empty_like(embed)
        head[follow] = embed
        tensors["lm_head.weight"] = head
    for key in tensors:
        if key.endswith(_OUTPUT_PROJECTIONS):
            tensors[key] = tensors[key] * (0.0 if key.startswith("mtp.") else mix_scale)
    final_norm = next(k for k in tensors if k.endswith("norm.weight") and not k.startswith("mtp.")
                      and k.split(".")[-2] == "norm" and ".layers." not in k)
    tensors["mtp.fc.weight"] = torch.cat([torch.eye(hidden), torch.zeros(hidden, hidden)], dim=1)
    tensors["mtp.pre_fc_norm_embedding.weight"] = torch.zeros(hidden)
    tensors["mtp.norm.weight"] = tensors[final_norm].clone()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"format": "pt"})
    return directory
