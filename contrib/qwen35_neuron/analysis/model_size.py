"""Parameter counts of a Qwen3.5 checkpoint (MoE or dense) from its config alone, whole and per TP rank.

The per-layer shapes follow the Hugging Face checkpoint layout (q_proj carries query and gate,
DeltaNet has separate qkv / z / a / b projections, experts are [E, 2I, H] + [E, H, I]). The
per-rank view follows the sharding the neuron layer uses: heads, expert intermediate and shared
intermediate (the dense family's MLP intermediate) split over TP; router, norms and the
shared-expert gate replicated; KV heads
replicated up to the TP degree when there are fewer KV heads than ranks (NxDI's GQA rule).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import TextConfig, VisionConfig
from ..config.tp_shapes import check_tp_supported, head_shard


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts by part; ``active`` is what one token touches (input embedding excluded)."""

    embedding: int
    lm_head: int
    attention: int
    deltanet: int
    routed_experts: int
    routed_experts_active: int
    shared_experts: int
    router: int
    norms: int
    vision: int = 0
    mlp: int = 0  # the dense family's MLPs (0 for MoE checkpoints)

    @property
    def text_total(self) -> int:
        return (self.embedding + self.lm_head + self.attention + self.deltanet + self.routed_experts
                + self.shared_experts + self.router + self.norms + self.mlp)

    @property
    def total(self) -> int:
        return self.text_total + self.vision

    @property
    def active(self) -> int:
        return self.text_total - self.embedding - self.routed_experts + self.routed_experts_active


def attention_layer_params(t: TextConfig) -> int:
    q_and_gate = t.hidden_size * t.num_attention_heads * t.head_dim * 2
    kv = 2 * t.hidden_size * t.num_key_value_heads * t.head_dim
    out = t.num_attention_heads * t.head_dim * t.hidden_size
    return q_and_gate + kv + out + 2 * t.head_dim


def deltanet_layer_params(t: TextConfig) -> int:
    h, nv = t.hidden_size, t.linear_num_value_heads
    projections = h * t.linear_conv_dim + h * t.linear_value_dim + 2 * h * nv + t.linear_value_dim * h
    return projections + t.linear_conv_dim * t.linear_conv_kernel_dim + 2 * nv + t.linear_value_head_dim


def expert_params(t: TextConfig) -> int:
    """One routed expert: gate, up and down projections."""
    return 3 * t.hidden_size * t.moe_intermediate_size


def vision_params(v: VisionConfig) -> int:
    h, m2 = v.hidden_size, v.spatial_merge_size ** 2
    patch = v.in_channels * v.temporal_patch_size * v.patch_size ** 2 * h + h
    block = 4 * h + (3 * h * h + 3 * h) + (h * h + h) + (2 * h * v.intermediate_size + v.intermediate_size + h)
    merger = 2 * h + (h * m2) ** 2 + h * m2 + v.out_hidden_size * h * m2 + v.out_hidden_size
    return patch + v.num_position_embeddings * h + v.depth * block + merger


def count_params(text: TextConfig, vision: VisionConfig | None = None) -> ParamCounts:
    n_attn, n_lin, n_layers = len(text.full_attention_layer_ids), len(text.linear_layer_ids), text.num_hidden_layers
    h = text.hidden_size
    return ParamCounts(
        embedding=text.vocab_size * h,
        lm_head=0 if text.tie_word_embeddings else text.vocab_size * h,
        attention=n_attn * attention_layer_params(text),
        deltanet=n_lin * deltanet_layer_params(text),
        routed_experts=n_layers * text.num_experts * expert_params(text),
        routed_experts_active=n_layers * text.num_experts_per_tok * expert_params(text),
        shared_experts=n_layers * (3 * h * text.shared_expert_intermediate_size + h),
        router=n_layers * text.num_experts * h,
        norms=n_layers * 2 * h + h,
        vision=vision_params(vision) if vision is not None else 0,
        mlp=n_layers * 3 * h * text.intermediate_size,
    )


@dataclass(frozen=True)
class RankShapes:
    """What one of ``tp`` ranks holds: head counts and sharded widths."""

    tp: int
    q_heads: int
    kv_heads: int
    linear_key_heads: int
    linear_value_heads: int
    expert_intermediate: int
    shared_intermediate: int
    vocab: int
    mlp_intermediate: int = 0  # the dense family's MLP

    @classmethod
    def of(cls, t: TextConfig, tp: int) -> "RankShapes":
        """The shapes our TP sharding (:mod:`qwen35_neuron.parallel.sharding`) gives one rank: heads
        split evenly, KV heads and DeltaNet key heads replicated when fewer than ``tp``."""
        check_tp_supported(t, tp)
        return cls(
            tp=tp,
            q_heads=t.num_attention_heads // tp,
            kv_heads=head_shard(t.num_key_value_heads, tp, 0, "num_key_value_heads").count,
            linear_key_heads=head_shard(t.linear_num_key_heads, tp, 0, "linear_num_key_heads").count,
            linear_value_heads=t.linear_num_value_heads // tp,
            expert_intermediate=t.moe_intermediate_size // tp,
            shared_intermediate=t.shared_expert_intermediate_size // tp,
            vocab=t.vocab_size // tp,
            mlp_intermediate=t.intermediate_size // tp,
        )

    def attention_layer(self, t: TextConfig) -> int:
        h, d = t.hidden_size, t.head_dim
        return h * self.q_heads * d * 2 + 2 * h * self.kv_heads * d + self.q_heads * d * h + 2 * d

    def deltanet_layer(self, t: TextConfig) -> int:
        h, dk, dv = t.hidden_size, t.linear_key_head_dim, t.linear_value_head_dim
        kd, vd = self.linear_key_heads * dk, self.linear_value_heads * dv
        conv = 2 * kd + vd
        return (h * conv + h * vd + 2 * h * self.linear_value_heads + vd * h
                + conv * t.linear_conv_kernel_dim + 2 * self.linear_value_heads + dv)

    def expert(self, t: TextConfig) -> int:
        return 3 * t.hidden_size * self.expert_intermediate

    def shared_expert(self, t: TextConfig) -> int:
        return 3 * t.hidden_size * self.shared_intermediate + t.hidden_size

    def mlp(self, t: TextConfig) -> int:
        """The dense family's MLP (0 for MoE checkpoints)."""
        return 3 * t.hidden_size * self.mlp_intermediate

    def conv_channels(self, t: TextConfig) -> int:
        return 2 * self.linear_key_heads * t.linear_key_head_dim + self.linear_value_heads * t.linear_value_head_dim
