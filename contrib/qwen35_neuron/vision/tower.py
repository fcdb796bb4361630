"""The Qwen3.5 ViT vision tower as a static-shape module (one graph per patch bucket).

The forward takes a bucket of packed patches plus host-computed geometry (position-embedding
taps, rotary cos/sin, a block-diagonal attention bias) and returns the merged embeddings that
replace the image placeholder tokens of the text model. Nothing in the forward depends on the
image grids, so the same graph serves every mix of images that fits the bucket.

Parameter names equal Hugging Face's under ``model.visual.`` (prefix removed), so a checkpoint's
vision tensors load directly; the Conv3d patch-embedding weight is flattened on load because a
Conv3d whose stride equals its kernel is a Linear over the flattened patch.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..config import VisionConfig
from ..errors import UnsupportedConfigError

# Activation names of HF's ACT2FN that the vision MLP may use, mapped to F.gelu's ``approximate``.
_GELU_VARIANTS = {"gelu_pytorch_tanh": "tanh", "gelu_new": "tanh", "gelu_fast": "tanh", "gelu": "none"}


def patch_dim(config: VisionConfig) -> int:
    """Length of one flattened patch: channels x temporal x patch x patch (in that order)."""
    return config.in_channels * config.temporal_patch_size * config.patch_size * config.patch_size


def head_dim(config: VisionConfig) -> int:
    return config.hidden_size // config.num_heads


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class VisionPatchEmbed(nn.Module):
    """Linear projection of each flattened [C, T, P, P] patch (HF stores it as a Conv3d)."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(patch_dim(config), config.hidden_size, bias=True)
        self._register_load_state_dict_pre_hook(self._flatten_conv_weight)

    @staticmethod
    def _flatten_conv_weight(state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        key = prefix + "proj.weight"
        weight = state_dict.get(key)
        if weight is not None and weight.dim() == 5:
            state_dict[key] = weight.reshape(weight.shape[0], -1)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.proj(patches.to(self.proj.weight.dtype))


class VisionAttention(nn.Module):
    """Bidirectional multi-head attention with 2-D rotary; the additive bias keeps images apart."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        if config.hidden_size % config.num_heads:
            raise UnsupportedConfigError(
                f"vision hidden_size {config.hidden_size} is not divisible by num_heads {config.num_heads}"
            )
        self.num_heads = config.num_heads
        self.head_dim = head_dim(config)
        if self.head_dim % 4:
            raise UnsupportedConfigError(
                f"vision head_dim {self.head_dim} must be a multiple of 4 (2-D rotary splits it into h and w halves)"
            )
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=True)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size, bias=True)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        q, k, v = self.qkv(x).view(n, 3, self.num_heads, self.head_dim).unbind(1)  # each [N, H, D]
        q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
        q, k, v = (t.transpose(0, 1) for t in (q, k, v))  # [H, N, D]
        scores = torch.matmul(q, k.transpose(1, 2)) * (self.head_dim ** -0.5)
        # Softmax in fp32: masked entries (bias -65504) then underflow to exactly 0 in any dtype.
        probs = torch.softmax(scores.float() + bias.float(), dim=-1).to(v.dtype)
        out = torch.matmul(probs, v).transpose(0, 1).reshape(n, -1)
        return self.proj(out)

    @staticmethod
    def _rotate(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotary in fp32 (as HF does) and back to the activation dtype."""
        c, s = cos.float().unsqueeze(1), sin.float().unsqueeze(1)
        tf = t.float()
        return (tf * c + _rotate_half(tf) * s).to(t.dtype)


class VisionMLP(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        if config.hidden_act not in _GELU_VARIANTS:
            raise UnsupportedConfigError(
                f"vision hidden_act {config.hidden_act!r} is not supported (choose from {sorted(_GELU_VARIANTS)})"
            )
        self.approximate = _GELU_VARIANTS[config.hidden_act]
        self.linear_fc1 = nn.Linear(config.hidden_size, config.intermediate_size, bias=True)
        self.linear_fc2 = nn.Linear(config.intermediate_size, config.hidden_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_fc2(F.gelu(self.linear_fc1(x), approximate=self.approximate))


class VisionBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = VisionAttention(config)
        self.mlp = VisionMLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin, bias)
        return x + self.mlp(self.norm2(x))


class VisionPatchMerger(nn.Module):
    """LayerNorm per patch, then each merge x merge block of consecutive patches -> one text token.

    Consecutive because the processor emits patches in merge-block order; the MLP's GELU is the
    exact (erf) one in HF, unlike the blocks' tanh GELU.
    """

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.merged_dim = config.hidden_size * config.spatial_merge_size ** 2
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.linear_fc1 = nn.Linear(self.merged_dim, self.merged_dim, bias=True)
        self.linear_fc2 = nn.Linear(self.merged_dim, config.out_hidden_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x).reshape(-1, self.merged_dim)
        return self.linear_fc2(F.gelu(self.linear_fc1(x)))


class VisionTower(nn.Module):
    """The whole ViT for one static bucket of ``N`` patches (``N`` a multiple of merge**2).

    forward(patches [N, patch_dim], pos_index [N, 4] long, pos_weight [N, 4],
            cos [N, head_dim], sin [N, head_dim], attention_bias [N, N]) -> [N // merge**2, out_hidden]

    Build the inputs with :func:`qwen35_neuron.vision.packing.pack_images`.
    """

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = VisionPatchEmbed(config)
        self.pos_embed = nn.Embedding(config.num_position_embeddings, config.hidden_size)
        self.blocks = nn.ModuleList(VisionBlock(config) for _ in range(config.depth))
        self.merger = VisionPatchMerger(config)

    def forward(
        self,
        patches: torch.Tensor,
        pos_index: torch.Tensor,
        pos_weight: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attention_bias: torch.Tensor,
    ) -> torch.Tensor:
        x = self.patch_embed(patches)
        # Bilinear interpolation of the learned square position grid as a weighted 4-tap gather.
        pos = (self.pos_embed(pos_index) * pos_weight.unsqueeze(-1).to(self.pos_embed.weight.dtype)).sum(1)
        x = x + pos.to(x.dtype)
        for block in self.blocks:
            x = block(x, cos, sin, attention_bias)
        return self.merger(x)


def vision_state_dict_from_hf(
    state_dict: Mapping[str, torch.Tensor], prefix: str = "model.visual."
) -> dict[str, torch.Tensor]:
    """Select a checkpoint's vision tensors, strip ``prefix`` and flatten the Conv3d weight.

    Keys outside ``prefix`` are ignored, so a full model state dict can be passed as is.
    """
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name == "patch_embed.proj.weight" and tensor.dim() == 5:
            tensor = tensor.reshape(tensor.shape[0], -1)
        out[name] = tensor
    return out
