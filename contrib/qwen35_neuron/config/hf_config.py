"""Parse a Hugging Face ``config.json`` of the Qwen3.5 family into frozen dataclasses.

Accepted ``model_type`` values: ``qwen3_5_moe`` and the dense ``qwen3_5`` (composite:
``text_config`` + ``vision_config``, the published checkpoints), ``qwen3_5_moe_text`` and
``qwen3_5_text`` (text only). The dense family has one SwiGLU MLP (``intermediate_size``) per layer
where the MoE family has its sparse MoE block; everything else is shared. Everything the model
code needs is read here once and validated, so the modules never look at raw dicts and a config
we do not support fails before any weight is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import UnsupportedConfigError
from .fields import bool_field, float_field, int_field, int_list_field, mapping_field

LINEAR_ATTENTION = "linear_attention"
FULL_ATTENTION = "full_attention"

COMPOSITE_MODEL_TYPES = ("qwen3_5_moe", "qwen3_5")
TEXT_MODEL_TYPES = ("qwen3_5_moe_text", "qwen3_5_text")
DENSE_MODEL_TYPES = ("qwen3_5", "qwen3_5_text")  # an MLP per layer instead of the sparse MoE
DEFAULT_MROPE_SECTION = (11, 11, 10)
DEFAULT_EOS_TOKEN_IDS = (248046, 248044)


@dataclass(frozen=True)
class TextConfig:
    """The language model: hybrid decoder of DeltaNet and gated-attention layers, each with a sparse
    MoE (``num_experts`` > 0) or, in the dense family, a SwiGLU MLP of ``intermediate_size``."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    layer_types: tuple[str, ...]
    rms_norm_eps: float
    # gated full attention
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rope_theta: float
    partial_rotary_factor: float
    mrope_section: tuple[int, ...]
    # Gated DeltaNet
    linear_conv_kernel_dim: int
    linear_key_head_dim: int
    linear_value_head_dim: int
    linear_num_key_heads: int
    linear_num_value_heads: int
    # sparse MoE with a sigmoid-gated shared expert (all 0 in the dense family)
    num_experts: int
    num_experts_per_tok: int
    moe_intermediate_size: int
    shared_expert_intermediate_size: int
    intermediate_size: int = 0  # the dense family's MLP (0 in the MoE family)
    mtp_num_hidden_layers: int = 0  # multi-token-prediction layers the checkpoint ships under mtp.*
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 32768
    pad_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = DEFAULT_EOS_TOKEN_IDS

    # ---- derived sizes (never stored twice) ----
    @property
    def is_moe(self) -> bool:
        """Sparse MoE layers (qwen3_5_moe); False: the dense family's MLP (qwen3_5)."""
        return self.num_experts > 0

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def linear_key_dim(self) -> int:
        return self.linear_num_key_heads * self.linear_key_head_dim

    @property
    def linear_value_dim(self) -> int:
        return self.linear_num_value_heads * self.linear_value_head_dim

    @property
    def linear_conv_dim(self) -> int:
        """Channels of the causal conv: q, k and v sections stacked."""
        return 2 * self.linear_key_dim + self.linear_value_dim

    @property
    def linear_layer_ids(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.layer_types) if t == LINEAR_ATTENTION)

    @property
    def full_attention_layer_ids(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.layer_types) if t == FULL_ATTENTION)


@dataclass(frozen=True)
class VisionConfig:
    """The ViT vision tower and its patch merger."""

    depth: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    in_channels: int
    patch_size: int
    temporal_patch_size: int
    spatial_merge_size: int
    out_hidden_size: int
    num_position_embeddings: int
    hidden_act: str = "gelu_pytorch_tanh"
    layer_norm_eps: float = 1e-6
    rope_theta: float = 10000.0  # the 2-D vision rotary's base


@dataclass(frozen=True)
class ModelConfig:
    """A whole checkpoint's description: text model, optional vision tower, special token ids."""

    model_type: str
    text: TextConfig
    vision: VisionConfig | None = None
    image_token_id: int = 248056
    video_token_id: int = 248057
    vision_start_token_id: int = 248053
    vision_end_token_id: int = 248054
    architectures: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_multimodal(self) -> bool:
        return self.vision is not None


def load_model_config(model_dir: str | Path) -> ModelConfig:
    """Read ``<model_dir>/config.json`` (and EOS ids from generation_config.json when present)."""
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if model_dir.exists() and not model_dir.is_dir():
        raise UnsupportedConfigError(f"{model_dir} is a file, not a model directory: pass the directory that holds "
                                     "config.json and the safetensors")
    if not model_dir.is_dir():
        raise UnsupportedConfigError(f"model directory {model_dir} does not exist")
    if not config_path.is_file():
        raise UnsupportedConfigError(
            f"{model_dir} has no config.json: pass the directory of a Hugging Face checkpoint"
        )
    raw = _read_json(config_path)
    eos = _read_generation_eos(model_dir / "generation_config.json")
    return parse_model_config(raw, eos_token_ids=eos)


def _read_json(path: Path) -> Any:
    """A JSON file's content; unreadable or invalid files are one error naming the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise UnsupportedConfigError(f"{path} is not valid JSON ({err}): restore it from the model's "
                                     "published files") from err
    except OSError as err:
        raise UnsupportedConfigError(f"cannot read {path}: {err.strerror or err}") from err


def parse_model_config(raw: Mapping[str, Any], eos_token_ids: tuple[int, ...] | None = None) -> ModelConfig:
    """Turn a config.json dict into a validated :class:`ModelConfig`."""
    try:
        return _parse_model_config(raw, eos_token_ids)
    except (TypeError, ValueError, KeyError) as err:  # a float/list field of the wrong kind
        raise UnsupportedConfigError(f"config.json has a malformed field ({type(err).__name__}: {err}): "
                                     "compare it with the model's published config.json") from err


def _parse_model_config(raw: Mapping[str, Any], eos_token_ids: tuple[int, ...] | None) -> ModelConfig:
    if not isinstance(raw, Mapping):
        raise UnsupportedConfigError(f"config.json must hold a JSON object, not {type(raw).__name__}")
    model_type = raw.get("model_type")
    if model_type in COMPOSITE_MODEL_TYPES:
        text_raw = dict(mapping_field(raw, "text_config"))
        if "tie_word_embeddings" in raw:  # transformers ties the composite model by the top-level flag
            text_raw["tie_word_embeddings"] = raw["tie_word_embeddings"]
        vision_raw = mapping_field(raw, "vision_config")
        vision = _parse_vision(vision_raw) if vision_raw else None
    elif model_type in TEXT_MODEL_TYPES:
        text_raw, vision = dict(raw), None
    else:
        supported = ", ".join(COMPOSITE_MODEL_TYPES + TEXT_MODEL_TYPES)
        raise UnsupportedConfigError(f"model_type {model_type!r} is not supported (supported: {supported})")
    if eos_token_ids is None:
        eos_source = text_raw if text_raw.get("eos_token_id") is not None else raw
        eos_token_ids = int_list_field(eos_source, "eos_token_id", ())
    text = _parse_text(text_raw, eos_token_ids or DEFAULT_EOS_TOKEN_IDS, dense=model_type in DENSE_MODEL_TYPES)
    return ModelConfig(
        model_type=model_type,
        text=text,
        vision=vision,
        image_token_id=int_field(raw, "image_token_id", 248056, minimum=0),
        video_token_id=int_field(raw, "video_token_id", 248057, minimum=0),
        vision_start_token_id=int_field(raw, "vision_start_token_id", 248053, minimum=0),
        vision_end_token_id=int_field(raw, "vision_end_token_id", 248054, minimum=0),
        architectures=tuple(raw.get("architectures") or ()),
    )


def _parse_text(raw: dict[str, Any], eos_token_ids: tuple[int, ...], dense: bool = False) -> TextConfig:
    feed_forward = ["intermediate_size"] if dense else ["num_experts", "moe_intermediate_size"]
    _require(raw, "text_config", ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                  "num_key_value_heads", *feed_forward])
    if raw.get("hidden_act", "silu") != "silu":
        raise UnsupportedConfigError(f"hidden_act {raw['hidden_act']!r} is not supported (only 'silu')")
    if raw.get("attention_bias", False):
        raise UnsupportedConfigError("attention_bias=true is not supported by Qwen3.5 gated attention")
    rope = _rope_parameters(raw)
    num_layers = _int(raw, "num_hidden_layers")
    vocab_size = _int(raw, "vocab_size")
    pad = raw.get("pad_token_id")
    text = TextConfig(
        vocab_size=vocab_size,
        hidden_size=_int(raw, "hidden_size"),
        num_hidden_layers=num_layers,
        layer_types=_layer_types(raw, num_layers),
        rms_norm_eps=float_field(raw, "rms_norm_eps", 1e-6, minimum=0.0),
        num_attention_heads=_int(raw, "num_attention_heads"),
        num_key_value_heads=_int(raw, "num_key_value_heads"),
        head_dim=_int(raw, "head_dim", _int(raw, "hidden_size") // _int(raw, "num_attention_heads")),
        rope_theta=rope["rope_theta"],
        partial_rotary_factor=rope["partial_rotary_factor"],
        mrope_section=rope["mrope_section"],
        linear_conv_kernel_dim=_int(raw, "linear_conv_kernel_dim", 4),
        linear_key_head_dim=_int(raw, "linear_key_head_dim", 128),
        linear_value_head_dim=_int(raw, "linear_value_head_dim", 128),
        linear_num_key_heads=_int(raw, "linear_num_key_heads", 16),
        linear_num_value_heads=_int(raw, "linear_num_value_heads", 32),
        **(_dense_feed_forward(raw) if dense else _moe_feed_forward(raw)),
        mtp_num_hidden_layers=_int(raw, "mtp_num_hidden_layers", 0, minimum=0),
        tie_word_embeddings=bool_field(raw, "tie_word_embeddings", False),
        max_position_embeddings=_int(raw, "max_position_embeddings", 32768),
        pad_token_id=None if pad is None else int_field(raw, "pad_token_id", minimum=0),
        eos_token_ids=eos_token_ids,
    )
    _validate_text(text)
    return text


def _moe_feed_forward(raw: dict[str, Any]) -> dict[str, int]:
    return dict(
        num_experts=_int(raw, "num_experts"),
        num_experts_per_tok=_int(raw, "num_experts_per_tok", 8),
        moe_intermediate_size=_int(raw, "moe_intermediate_size"),
        shared_expert_intermediate_size=_int(raw, "shared_expert_intermediate_size", _int(raw, "moe_intermediate_size")),
    )


def _dense_feed_forward(raw: dict[str, Any]) -> dict[str, int]:
    return dict(num_experts=0, num_experts_per_tok=0, moe_intermediate_size=0, shared_expert_intermediate_size=0,
                intermediate_size=_int(raw, "intermediate_size"))


def _rope_parameters(raw: dict[str, Any]) -> dict[str, Any]:
    """transformers 5 writes ``rope_parameters``; older exports use ``rope_theta``/``rope_scaling``."""
    params = dict(mapping_field(raw, "rope_scaling"))
    params.update(mapping_field(raw, "rope_parameters"))
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in ("default", "mrope"):
        raise UnsupportedConfigError(f"rope_type {rope_type!r} is not supported (only default multimodal RoPE)")
    where = "config.json rope_parameters"
    if not bool_field(params, "mrope_interleaved", True, where=where):
        raise UnsupportedConfigError("mrope_interleaved=false is not supported: Qwen3.5 interleaves T/H/W")
    return {
        "rope_theta": float_field(params, "rope_theta", raw.get("rope_theta", 10000.0), minimum=0.0, where=where),
        "partial_rotary_factor": float_field(params, "partial_rotary_factor", raw.get("partial_rotary_factor", 0.25),
                                             minimum=0.0, maximum=1.0, where=where),
        "mrope_section": int_list_field(params, "mrope_section", DEFAULT_MROPE_SECTION, where=where),
    }


def _layer_types(raw: dict[str, Any], num_layers: int) -> tuple[str, ...]:
    types = raw.get("layer_types")
    if types is not None and not isinstance(types, (list, tuple)):
        raise UnsupportedConfigError(f"config.json field 'layer_types' must be a list, got {types!r}")
    if types is None:
        interval = _int(raw, "full_attention_interval", 4)
        types = [FULL_ATTENTION if (i + 1) % interval == 0 else LINEAR_ATTENTION for i in range(num_layers)]
    types = tuple(types)
    if len(types) != num_layers:
        raise UnsupportedConfigError(
            f"layer_types has {len(types)} entries but num_hidden_layers is {num_layers}: make them agree"
        )
    unknown = sorted(set(types) - {LINEAR_ATTENTION, FULL_ATTENTION})
    if unknown:
        raise UnsupportedConfigError(f"unsupported layer types {unknown}: only {LINEAR_ATTENTION!r} and "
                                     f"{FULL_ATTENTION!r} exist in Qwen3.5")
    return types


def _validate_text(t: TextConfig) -> None:
    checks = [
        (t.num_attention_heads % t.num_key_value_heads == 0,
         f"num_attention_heads {t.num_attention_heads} is not a multiple of num_key_value_heads "
         f"{t.num_key_value_heads}"),
        (t.linear_num_value_heads % t.linear_num_key_heads == 0,
         f"linear_num_value_heads {t.linear_num_value_heads} is not a multiple of linear_num_key_heads "
         f"{t.linear_num_key_heads}"),
        (not t.is_moe or 0 < t.num_experts_per_tok <= t.num_experts,
         f"num_experts_per_tok {t.num_experts_per_tok} must be in 1..num_experts ({t.num_experts})"),
        (t.rotary_dim % 2 == 0 and 0 < t.rotary_dim <= t.head_dim,
         f"head_dim {t.head_dim} x partial_rotary_factor {t.partial_rotary_factor} must give an even "
         "rotary dim within the head"),
        (len(t.mrope_section) == 3, f"mrope_section must have 3 entries (T, H, W), got {t.mrope_section}"),
        (t.linear_conv_kernel_dim >= 2, "linear_conv_kernel_dim must be at least 2"),
    ]
    for ok, message in checks:
        if not ok:
            raise UnsupportedConfigError(message)


def _parse_vision(raw: Mapping[str, Any]) -> VisionConfig:
    _require(raw, "vision_config", ["hidden_size", "num_heads", "out_hidden_size"])
    where = "config.json vision_config"
    vision = VisionConfig(
        depth=_int(raw, "depth", 27),
        hidden_size=_int(raw, "hidden_size"),
        intermediate_size=_int(raw, "intermediate_size", 4304),
        num_heads=_int(raw, "num_heads"),
        in_channels=_int(raw, "in_channels", 3),
        patch_size=_int(raw, "patch_size", 16),
        temporal_patch_size=_int(raw, "temporal_patch_size", 2),
        spatial_merge_size=_int(raw, "spatial_merge_size", 2),
        out_hidden_size=_int(raw, "out_hidden_size"),
        num_position_embeddings=_int(raw, "num_position_embeddings", 2304),
        hidden_act=str(raw.get("hidden_act", "gelu_pytorch_tanh")),
        layer_norm_eps=float_field(raw, "layer_norm_eps", 1e-6, minimum=0.0, where=where),
        rope_theta=float_field(mapping_field(raw, "rope_parameters", where=where), "rope_theta", 10000.0,
                               minimum=0.0, where=where + " rope_parameters"),
    )
    if vision.hidden_size % vision.num_heads:
        raise UnsupportedConfigError(f"{where}: hidden_size {vision.hidden_size} is not a multiple of num_heads "
                                     f"{vision.num_heads}")
    if (vision.hidden_size // vision.num_heads) % 4:
        raise UnsupportedConfigError(f"{where}: the head size hidden_size / num_heads = "
                                     f"{vision.hidden_size // vision.num_heads} must be a multiple of 4 (2-D rotary)")
    return vision


def _int(raw: Mapping[str, Any], key: str, default: int | None = None, minimum: int = 1) -> int:
    """An integer field, or a clear error naming it (wrong type, below ``minimum``, missing)."""
    return int_field(raw, key, *(() if default is None else (default,)), minimum=minimum)


def _require(raw: Mapping[str, Any], where: str, keys: list[str]) -> None:
    missing = [k for k in keys if k not in raw]
    if missing:
        raise UnsupportedConfigError(f"{where} lacks required fields {missing}: is this a Qwen3.5 config.json?")


def _read_generation_eos(path: Path) -> tuple[int, ...] | None:
    """EOS ids from generation_config.json; None when the file or the field is absent."""
    if not path.is_file():
        return None
    raw = _read_json(path)
    if not isinstance(raw, Mapping):
        raise UnsupportedConfigError(f"{path} must hold a JSON object, not {type(raw).__name__}")
    return int_list_field(raw, "eos_token_id", (), where="generation_config.json") or None
