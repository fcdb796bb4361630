"""The tensors a config requires, with their shapes, in canonical names (see :mod:`.layout`).

Derived from the parsed config alone (layer types, head counts, num_experts, tie_word_embeddings),
so the tensor gate can name every missing or mis-shaped tensor before anything is built, and
the bigger Qwen3.5 siblings need no code change. Dicts are ordered the way a loader should stream
them: embeddings, layers in order, final norm, LM head.
"""

from __future__ import annotations

from ..config import FULL_ATTENTION, LINEAR_ATTENTION, TextConfig, VisionConfig
from ..errors import UnsupportedConfigError

Shape = tuple[int, ...]


def expected_text_shapes(text: TextConfig) -> dict[str, Shape]:
    """Canonical text tensor name -> shape. ``lm_head.weight`` is absent when embeddings are tied."""
    shapes: dict[str, Shape] = {"embed_tokens.weight": (text.vocab_size, text.hidden_size)}
    for i, layer_type in enumerate(text.layer_types):
        shapes.update(decoder_layer_shapes(f"layers.{i}.", text, layer_type))
    shapes["norm.weight"] = (text.hidden_size,)
    if not text.tie_word_embeddings:
        shapes["lm_head.weight"] = (text.vocab_size, text.hidden_size)
    return shapes


def decoder_layer_shapes(prefix: str, text: TextConfig, layer_type: str) -> dict[str, Shape]:
    """One decoder layer: token mixer (DeltaNet or gated attention), MoE or dense MLP, the two norms."""
    if layer_type not in (LINEAR_ATTENTION, FULL_ATTENTION):
        raise UnsupportedConfigError(f"unknown layer type {layer_type!r}: only {LINEAR_ATTENTION!r} and "
                                     f"{FULL_ATTENTION!r} exist in Qwen3.5")
    h = text.hidden_size
    mixer = deltanet_shapes if layer_type == LINEAR_ATTENTION else attention_shapes
    shapes = mixer(prefix, text)
    shapes.update((moe_shapes if text.is_moe else mlp_shapes)(prefix + "mlp.", text))
    shapes[prefix + "input_layernorm.weight"] = (h,)
    shapes[prefix + "post_attention_layernorm.weight"] = (h,)
    return shapes


def deltanet_shapes(prefix: str, text: TextConfig) -> dict[str, Shape]:
    h, hv, p = text.hidden_size, text.linear_num_value_heads, prefix + "linear_attn."
    return {
        p + "in_proj_qkv.weight": (text.linear_conv_dim, h),
        p + "in_proj_z.weight": (text.linear_value_dim, h),
        p + "in_proj_b.weight": (hv, h),
        p + "in_proj_a.weight": (hv, h),
        p + "conv1d.weight": (text.linear_conv_dim, 1, text.linear_conv_kernel_dim),
        p + "dt_bias": (hv,),
        p + "A_log": (hv,),
        p + "norm.weight": (text.linear_value_head_dim,),
        p + "out_proj.weight": (h, text.linear_value_dim),
    }


def attention_shapes(prefix: str, text: TextConfig) -> dict[str, Shape]:
    """Gated attention: q_proj holds, per head, the query then its output gate (hence 2 * head_dim)."""
    h, d, p = text.hidden_size, text.head_dim, prefix + "self_attn."
    q_heads, kv_heads = text.num_attention_heads, text.num_key_value_heads
    return {
        p + "q_proj.weight": (q_heads * 2 * d, h),
        p + "k_proj.weight": (kv_heads * d, h),
        p + "v_proj.weight": (kv_heads * d, h),
        p + "o_proj.weight": (h, q_heads * d),
        p + "q_norm.weight": (d,),
        p + "k_norm.weight": (d,),
    }


def moe_shapes(prefix: str, text: TextConfig) -> dict[str, Shape]:
    """Router, fused routed experts (gate rows then up rows), sigmoid-gated shared expert."""
    h, e, i, s = text.hidden_size, text.num_experts, text.moe_intermediate_size, text.shared_expert_intermediate_size
    return {
        prefix + "gate.weight": (e, h),
        prefix + "experts.gate_up_proj": (e, 2 * i, h),
        prefix + "experts.down_proj": (e, h, i),
        prefix + "shared_expert.gate_proj.weight": (s, h),
        prefix + "shared_expert.up_proj.weight": (s, h),
        prefix + "shared_expert.down_proj.weight": (h, s),
        prefix + "shared_expert_gate.weight": (1, h),
    }


def mlp_shapes(prefix: str, text: TextConfig) -> dict[str, Shape]:
    """The dense family's SwiGLU MLP."""
    h, i = text.hidden_size, text.intermediate_size
    return {prefix + "gate_proj.weight": (i, h), prefix + "up_proj.weight": (i, h), prefix + "down_proj.weight": (h, i)}


def expert_part_shapes(text: TextConfig) -> dict[str, Shape]:
    """Shapes of one expert's tensors in the per-expert layout."""
    h, i = text.hidden_size, text.moe_intermediate_size
    return {"gate_proj": (i, h), "up_proj": (i, h), "down_proj": (h, i)}


def expected_vision_shapes(vision: VisionConfig) -> dict[str, Shape]:
    """Canonical vision tensor names (``visual.`` prefix) -> shape: patch embed, ViT blocks, merger."""
    h, f = vision.hidden_size, vision.intermediate_size
    merged = h * vision.spatial_merge_size ** 2
    shapes: dict[str, Shape] = {
        "visual.patch_embed.proj.weight": (h, vision.in_channels, vision.temporal_patch_size,
                                           vision.patch_size, vision.patch_size),
        "visual.patch_embed.proj.bias": (h,),
        "visual.pos_embed.weight": (vision.num_position_embeddings, h),
    }
    for i in range(vision.depth):
        p = f"visual.blocks.{i}."
        shapes.update({
            p + "norm1.weight": (h,), p + "norm1.bias": (h,),
            p + "norm2.weight": (h,), p + "norm2.bias": (h,),
            p + "attn.qkv.weight": (3 * h, h), p + "attn.qkv.bias": (3 * h,),
            p + "attn.proj.weight": (h, h), p + "attn.proj.bias": (h,),
            p + "mlp.linear_fc1.weight": (f, h), p + "mlp.linear_fc1.bias": (f,),
            p + "mlp.linear_fc2.weight": (h, f), p + "mlp.linear_fc2.bias": (h,),
        })
    shapes.update({
        "visual.merger.norm.weight": (h,), "visual.merger.norm.bias": (h,),
        "visual.merger.linear_fc1.weight": (merged, merged), "visual.merger.linear_fc1.bias": (merged,),
        "visual.merger.linear_fc2.weight": (vision.out_hidden_size, merged),
        "visual.merger.linear_fc2.bias": (vision.out_hidden_size,),
    })
    return shapes


def expected_mtp_shapes(text: TextConfig, num_layers: int = 1) -> dict[str, Shape]:
    """The multi-token-prediction head (``mtp.`` prefix), as the published Qwen3.5 checkpoints store it.

    Each MTP layer is a full-attention decoder layer with the same MoE (or dense MLP) as the main
    model; ``fc``
    fuses [embedding | hidden] (2H -> H) after their own RMSNorms. The MTP head shares the main
    embeddings and LM head, so neither appears here.
    """
    h = text.hidden_size
    shapes: dict[str, Shape] = {
        "mtp.pre_fc_norm_embedding.weight": (h,),
        "mtp.pre_fc_norm_hidden.weight": (h,),
        "mtp.fc.weight": (h, 2 * h),
    }
    for j in range(num_layers):
        shapes.update(decoder_layer_shapes(f"mtp.layers.{j}.", text, FULL_ATTENTION))
    shapes["mtp.norm.weight"] = (h,)
    return shapes
