"""Tiny random Qwen3.5 checkpoints (MoE, or the dense family with ``dense=True``), written the way the
published ones are, for tests and the demo.

The tensor names and shapes come from building the real transformers model from the config, so
what we write is what Hugging Face expects; the values come from our own seeded initialisation
with a larger spread than transformers' default (design section 5): at the default scale the
logits are nearly uniform and float rounding flips greedy ties, here token gaps dwarf the noise.
The safetensors are written directly (not through ``save_pretrained``, which re-splits experts) so
the expert layout is exactly the one asked for.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..checkpoint.expected import expected_mtp_shapes
from ..checkpoint.safetensors_file import SafetensorsWriter
from ..config import parse_model_config
from ..errors import CheckpointError

LAYOUTS = ("fused", "per_expert")
TOP_LEVEL_KEYS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id", "architectures")
TINY_EOS_TOKEN_IDS = [254, 255]

_TINY_TEXT: dict[str, Any] = {
    "model_type": "qwen3_5_moe_text",
    "vocab_size": 256,
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 1024,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25,
                        "mrope_interleaved": True},
    "linear_conv_kernel_dim": 4,
    "linear_key_head_dim": 16,
    "linear_value_head_dim": 16,
    "linear_num_key_heads": 2,
    "linear_num_value_heads": 4,
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 32,
    "tie_word_embeddings": False,
    "eos_token_id": TINY_EOS_TOKEN_IDS,
}
_TINY_VISION: dict[str, Any] = {
    "model_type": "qwen3_5_moe_vision",
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "in_channels": 3,
    "patch_size": 4,
    "temporal_patch_size": 2,
    "spatial_merge_size": 2,
    "num_position_embeddings": 16,  # a 4x4 learned grid, resampled per image
    "hidden_act": "gelu_pytorch_tanh",
}
_DENSE_INTERMEDIATE = 96  # the dense family's MLP width in tiny checkpoints
_MOE_KEYS = ("num_experts", "num_experts_per_tok", "moe_intermediate_size", "shared_expert_intermediate_size")
# (composite model_type, text model_type, composite architecture, text-only architecture) per family
FAMILIES = {
    False: ("qwen3_5_moe", "qwen3_5_moe_text", "Qwen3_5MoeForConditionalGeneration", "Qwen3_5MoeForCausalLM"),
    True: ("qwen3_5", "qwen3_5_text", "Qwen3_5ForConditionalGeneration", "Qwen3_5ForCausalLM"),
}
_TINY_TOP: dict[str, Any] = {
    "model_type": "qwen3_5_moe",
    "architectures": ["Qwen3_5MoeForConditionalGeneration"],
    "image_token_id": 250,  # inside the tiny vocabulary
    "video_token_id": 251,
    "vision_start_token_id": 252,
    "vision_end_token_id": 253,
    "tie_word_embeddings": False,
}


def tiny_config_dict(dense: bool = False, **overrides: Any) -> dict[str, Any]:
    """A composite ``qwen3_5_moe`` config.json dict: 4 layers (3 DeltaNet + 1 attention), 8 experts top-2;
    with ``dense`` the ``qwen3_5`` family's (an MLP of intermediate size 96 in place of the MoE).

    Overrides go into ``text_config`` except the token ids / architectures (top level),
    ``tie_word_embeddings`` (both levels, so the composite and text-only readings agree),
    ``vision_config`` (a dict merged into the vision tower) and ``rope_parameters`` (merged).
    ``layer_types`` follows ``num_hidden_layers`` (every ``full_attention_interval``-th layer,
    default 4, is attention) and ``mrope_section`` follows the rotary size, unless given.
    """
    top, text, vision = copy.deepcopy(_TINY_TOP), copy.deepcopy(_TINY_TEXT), copy.deepcopy(_TINY_VISION)
    if dense:
        top["model_type"], text["model_type"], arch, _ = FAMILIES[True]
        top["architectures"], vision["model_type"] = [arch], "qwen3_5_vision"
        for key in _MOE_KEYS:
            text.pop(key)
        text["intermediate_size"] = _DENSE_INTERMEDIATE
    for key, value in overrides.items():
        if key in TOP_LEVEL_KEYS:
            top[key] = value
        elif key == "tie_word_embeddings":
            top[key] = text[key] = bool(value)
        elif key == "vision_config":
            vision.update(value)
        elif key == "rope_parameters":
            text["rope_parameters"].update(value)
        else:
            text[key] = value
    interval = int(text.pop("full_attention_interval", 4))
    if "layer_types" not in overrides:
        text["layer_types"] = ["full_attention" if (i + 1) % interval == 0 else "linear_attention"
                               for i in range(int(text["num_hidden_layers"]))]
    rope = text["rope_parameters"]
    rope.setdefault("mrope_section", default_mrope_section(int(text["head_dim"] * rope["partial_rotary_factor"])))
    vision.setdefault("out_hidden_size", text["hidden_size"])
    return {**top, "text_config": text, "vision_config": vision}


def default_mrope_section(rotary_dim: int) -> list[int]:
    """Split rotary_dim/2 frequencies into (T, H, W) with H = W = floor(n/3): [2, 1, 1] for n = 4."""
    n = rotary_dim // 2
    return [n - 2 * (n // 3), n // 3, n // 3]


def is_dense(config_dict: dict[str, Any]) -> bool:
    """A config.json dict (composite or text-only) of the dense qwen3_5 family."""
    return config_dict.get("model_type") in FAMILIES[True][:2]


def text_only_config_dict(config_dict: dict[str, Any]) -> dict[str, Any]:
    """The text config.json a ``Qwen3_5MoeForCausalLM`` (or dense ``Qwen3_5ForCausalLM``) export carries."""
    _, text_type, _, text_arch = FAMILIES[is_dense(config_dict)]
    text = copy.deepcopy(config_dict["text_config"])
    text["model_type"] = text_type
    text["architectures"] = [text_arch]
    return text


# ---------------------------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------------------------


def build_tiny_checkpoint(
    directory: str | Path,
    config_dict: dict[str, Any] | None = None,
    *,
    layout: str = "fused",
    seed: int = 0,
    init_gain: float = 2.0,
    init_std: float | None = None,
    shards: int = 1,
    text_only: bool = False,
    mtp_layers: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write config.json, generation_config.json and safetensors for a random tiny model; return the dir.

    ``layout``: experts "fused" ([E, 2I, H] / [E, H, I]) or "per_expert" (``experts.{e}.*_proj``).
    ``init_gain``: matrices get std ``init_gain / sqrt(fan_in)`` (``init_std`` fixes one std for all).
    ``shards`` > 1 writes ``model-0000k-of-0000n.safetensors`` plus ``model.safetensors.index.json``.
    ``text_only`` writes a ``*ForCausalLM`` export (``model.*`` keys, text config.json).
    ``mtp_layers`` adds that many random MTP layers (``mtp.*``), which transformers ignores.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    config_dict = copy.deepcopy(config_dict if config_dict is not None else tiny_config_dict())
    if mtp_layers:
        config_dict["text_config"]["mtp_num_hidden_layers"] = mtp_layers
    tied = _tied(config_dict)
    generator = torch.Generator().manual_seed(seed)
    tensors = {name: init_tensor(name, shape, generator, init_gain, init_std)
               for name, shape in hf_parameter_shapes(config_dict).items()}
    if tied:
        tensors.pop("lm_head.weight")
    if mtp_layers:
        text = parse_model_config(config_dict).text
        tensors.update({name: init_tensor(name, shape, generator, init_gain, init_std)
                        for name, shape in expected_mtp_shapes(text, mtp_layers).items()})
    if text_only:
        tensors = {_text_only_key(k): v for k, v in tensors.items() if not k.startswith("model.visual.")}
    if layout == "per_expert":
        tensors = split_experts(tensors)
    tensors = {k: v.to(dtype).contiguous() for k, v in tensors.items()}

    directory = write_config_files(directory, config_dict, text_only)
    write_safetensors(directory, tensors, shards)
    return directory


def write_config_files(directory: str | Path, config_dict: dict[str, Any], text_only: bool = False) -> Path:
    """config.json (the text-only export's when ``text_only``) and generation_config.json (EOS ids)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written_config = text_only_config_dict(config_dict) if text_only else config_dict
    (directory / "config.json").write_text(json.dumps(written_config, indent=2))
    eos = config_dict["text_config"].get("eos_token_id", TINY_EOS_TOKEN_IDS)
    (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": eos}, indent=2))
    return directory


def build_streamed_checkpoint(directory: str | Path, config_dict: dict[str, Any], *, seed: int = 0,
                              dtype: torch.dtype = torch.bfloat16, text_only: bool = True,
                              init_gain: float = 1.0) -> Path:
    """A random checkpoint of any size written tensor by tensor (one tensor in memory at a time), for
    memory benchmarks: one ``model.safetensors``, fused experts, values as :func:`build_tiny_checkpoint`
    draws them (``text_only``: a ``Qwen3_5MoeForCausalLM`` export without the vision tower)."""
    config_dict = copy.deepcopy(config_dict)
    shapes = hf_parameter_shapes(config_dict)
    if _tied(config_dict):
        shapes.pop("lm_head.weight")
    if text_only:
        shapes = {name: shape for name, shape in shapes.items() if not name.startswith("model.visual.")}
    keys = {name: _text_only_key(name) if text_only else name for name in shapes}
    directory = write_config_files(directory, config_dict, text_only)
    generator = torch.Generator().manual_seed(seed)
    plan = [(keys[name], shape, dtype) for name, shape in shapes.items()]
    with SafetensorsWriter(directory / "model.safetensors", plan) as writer:
        for name, shape in shapes.items():
            writer.write(keys[name], init_tensor(name, shape, generator, init_gain).to(dtype))
    return directory


def _tied(config_dict: dict[str, Any]) -> bool:
    """The composite model ties by the top-level flag, a text-only export by text_config's: insist they agree."""
    top = bool(config_dict.get("tie_word_embeddings", False))
    text = bool(config_dict["text_config"].get("tie_word_embeddings", False))
    if top != text:
        raise ValueError("tie_word_embeddings differs between the top level and text_config; "
                         "set it through tiny_config_dict(tie_word_embeddings=...)")
    return top


def hf_parameter_shapes(config_dict: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Names and shapes of ``Qwen3_5(Moe)ForConditionalGeneration``'s state dict, built on the meta device."""
    import transformers

    dense = is_dense(config_dict)
    config_class = transformers.Qwen3_5Config if dense else transformers.Qwen3_5MoeConfig
    model_class = getattr(transformers, FAMILIES[dense][2])
    hf_config = config_class.from_dict(config_dict)
    with torch.device("meta"):
        model = model_class(hf_config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def _text_only_key(key: str) -> str:
    return "model." + key[len("model.language_model."):] if key.startswith("model.language_model.") else key


def init_tensor(name: str, shape: tuple[int, ...], generator: torch.Generator,
                gain: float = 1.0, fixed_std: float | None = None) -> torch.Tensor:
    """Seeded value of one parameter, chosen by its role (WHY each rule: see comments)."""
    def normal(std: float, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(shape, generator=generator) * std + mean

    leaf = name.rsplit(".", 2)
    if name.endswith("A_log"):  # decay rates exp(A_log) in [0.1, 2]: state carries over a few tokens
        return torch.empty(shape).uniform_(0.1, 2.0, generator=generator).log()
    if name.endswith("dt_bias"):
        return normal(0.5)
    if "visual." in name and "norm" in leaf[-2]:  # LayerNorm: weight near 1, small bias
        return normal(0.1, 1.0) if name.endswith(".weight") else normal(0.1)
    if name.endswith("linear_attn.norm.weight"):  # gated RMSNorm multiplies by w (init 1)
        return normal(0.1, 1.0)
    if "norm" in leaf[-2]:  # Qwen3.5 RMSNorms multiply by (1 + w): small random w
        return normal(0.1)
    if name.endswith(".bias"):
        return normal(0.1)
    if name.endswith(("embed_tokens.weight", "pos_embed.weight")):
        return normal(1.0)
    if fixed_std is not None:
        return normal(fixed_std)
    fan_in = shape[-1] if ".experts." in name or name.endswith(("experts.gate_up_proj", "experts.down_proj")) \
        else math.prod(shape[1:])
    return normal(gain / math.sqrt(fan_in))


def split_experts(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fused experts -> per-expert ``experts.{e}.{gate,up,down}_proj.weight`` (the transformers 4 layout)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if key.endswith("experts.gate_up_proj"):
            owner, inter = key[: -len(".gate_up_proj")], value.shape[1] // 2
            for e in range(value.shape[0]):
                out[f"{owner}.{e}.gate_proj.weight"] = value[e, :inter].clone()
                out[f"{owner}.{e}.up_proj.weight"] = value[e, inter:].clone()
        elif key.endswith("experts.down_proj"):
            owner = key[: -len(".down_proj")]
            for e in range(value.shape[0]):
                out[f"{owner}.{e}.down_proj.weight"] = value[e].clone()
        else:
            out[key] = value
    return out


def write_safetensors(directory: Path, tensors: dict[str, torch.Tensor], shards: int = 1) -> None:
    """One ``model.safetensors``, or ``shards`` files and an index, as ``save_pretrained`` names them."""
    metadata = {"format": "pt"}
    if shards == 1:
        save_file(tensors, str(directory / "model.safetensors"), metadata=metadata)
        return
    names = list(tensors)
    per_shard = math.ceil(len(names) / shards)
    weight_map: dict[str, str] = {}
    for index in range(shards):
        file_name = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        chunk = {k: tensors[k] for k in names[index * per_shard:(index + 1) * per_shard]}
        save_file(chunk, str(directory / file_name), metadata=metadata)
        weight_map.update({k: file_name for k in chunk})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index_doc = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index_doc, indent=2))


# ---------------------------------------------------------------------------------------------
# the Hugging Face reference
# ---------------------------------------------------------------------------------------------


def load_hf_reference(directory: str | Path, *, attn_implementation: str = "eager",
                      experts_implementation: str = "eager"):
    """``Qwen3_5MoeForConditionalGeneration.from_pretrained(directory)`` (``Qwen3_5ForConditionalGeneration``
    for the dense family) in fp32, eval mode.

    Fails with :class:`CheckpointError` when transformers reports missing or mis-shaped weights,
    so a test that uses it also proves HF reads what we wrote.
    """
    return _from_pretrained(_hf_class(directory, composite=True), directory, attn_implementation,
                            experts_implementation)


def load_hf_text_reference(directory: str | Path, *, attn_implementation: str = "eager",
                           experts_implementation: str = "eager"):
    """``Qwen3_5MoeForCausalLM`` (``Qwen3_5ForCausalLM`` for the dense family, text only) from a composite
    or text-only directory, fp32, eval.

    transformers maps composite ``model.language_model.*`` keys onto the text model's ``model.*``
    and ignores ``model.visual.*`` and ``mtp.*``.
    """
    return _from_pretrained(_hf_class(directory, composite=False), directory, attn_implementation,
                            experts_implementation)


def _hf_class(directory: str | Path, composite: bool):
    """The transformers class of the checkpoint's family (by its config.json model_type)."""
    import transformers

    config_dict = json.loads((Path(directory) / "config.json").read_text())
    return getattr(transformers, FAMILIES[is_dense(config_dict)][2 if composite else 3])


def _from_pretrained(model_class, directory: str | Path, attn_implementation: str, experts_implementation: str):
    """Eager attention and the eager per-expert loop by default: the plainest reference to compare with."""
    experts = {} if model_class.__name__.startswith("Qwen3_5For") else {"experts_implementation": experts_implementation}
    model, info = model_class.from_pretrained(
        str(directory), dtype=torch.float32, attn_implementation=attn_implementation, local_files_only=True,
        output_loading_info=True, **experts,
    )
    problems = {k: info.get(k) for k in ("missing_keys", "mismatched_keys", "error_msgs") if info.get(k)}
    if problems:
        raise CheckpointError(f"transformers could not load {directory} as {model_class.__name__}: {problems}")
    return model.eval()
