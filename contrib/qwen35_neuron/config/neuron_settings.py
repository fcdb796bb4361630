"""Trainium2 run settings of the neuron layer: TP, LNC, batch, buckets, dtype, kernels, MoE backend.

Kept as plain data (no Neuron import) so the compile scripts can print their presets and the CPU
tests can check them; :func:`neuron_config_kwargs` turns one into the keywords of NxDI's
``MoENeuronConfig``, whose constructor ignores misspelt names with only a log line - the tests
check every key against the pinned manifest instead.

State buffers are sized by ``batch_size`` rows (every row one request, picked by ``seq_ids``) and
``max_length`` cache slots; every compiled graph aliases the same buffers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..errors import UnsupportedConfigError
from .tp_shapes import check_tp_supported

if TYPE_CHECKING:
    from .hf_config import TextConfig

MOE_BACKENDS = ("ours", "nxd")  # ours: SparseMoe (static form); nxd: NxD RouterTopK + ExpertMLPsV2
DELTANET_KERNELS = ("ours", "nkilib", "torch")  # NKI kernels of qwen35_neuron.kernels / nki-library / twins
ATTENTION_KERNELS = ("ours", "torch")
MOE_KERNELS = ("ours", "torch")  # router logits + decode experts: our NKI kernels / the PyTorch twins
DTYPES = ("bfloat16", "float32")
NKILIB_GDN_CHUNK = 64  # nki-library's gdn_cte needs context lengths that are multiples of its chunk
TOKEN_BUCKET_MIN = 512  # smallest default token-generation bucket: below it the KV read is noise beside the weights


# How a user raises the cache of a compiled model (named in the one-line capacity errors)
MAX_LENGTH_OPTION = "--seq-len (NeuronSettings.max_length, then recompile)"


@dataclass(frozen=True)
class NeuronSettings:
    """How one checkpoint is compiled for Trainium2. Defaults: trn2.3xlarge, 35B-A3B, batch 1."""

    tp_degree: int = 4
    lnc: int = 2  # logical NeuronCore config: 2 physical cores per rank on trn2
    batch_size: int = 1  # rows of the state buffers = token-generation batch
    # Rows per context-encoding call. 1 (default): each request's prefill runs alone, so NxDI never
    # pads a CTE call with copies of its first row over rows other requests are using (continuous
    # batching, vLLM). None = batch_size: a whole static batch prefills in one call, faster when
    # every request starts together.
    ctx_batch_size: int | None = 1
    context_buckets: tuple[int, ...] = (128, 512, 2048)
    max_length: int = 4096  # cache slots per row: prompt + generated tokens
    # Token-generation graphs, by the cache slots their attention reads (NxDI's token-generation
    # buckets: NxDI runs the first one wider than the call's attention mask). The largest must be
    # max_length. None: powers of two from TOKEN_BUCKET_MIN up to max_length.
    token_buckets: tuple[int, ...] | None = None
    dtype: str = "bfloat16"
    moe_backend: str = "ours"
    deltanet_kernel: str = "ours"
    attention_kernel: str = "ours"
    # moe_backend "ours": router logits in fp32 from the bf16 weights (router_logits) and, in decode, the
    # chosen experts read in place (expert_decode)
    moe_kernel: str = "ours"
    gdr_chunk_size: int = 64
    moe_block_size: int = 128  # "ours" MoE prefill: slots per expert block of the dropless blockwise form
    # Sample on device with each request's top_k / top_p / temperature (NxDI's dynamic sampler; the
    # default parameters, and top_k 1, are greedy); off: logits come back to the host.
    on_device_sampling: bool = False
    output_logits: bool = False
    # NxDI's CPU mode (``to_cpu()``): NxDI's sampler takes torch's argmax instead of its device kernel
    on_cpu: bool = False
    save_sharded_checkpoint: bool = True  # shard once at compile time instead of at every load
    compiler_args: str | None = None  # None: NxDI's per-graph defaults (they include --lnc)
    # MTP speculative decoding: K drafts per verify graph of K+1 slots (0: plain token generation).
    # The CTE graph then also returns the first K drafts, and the MTP head's K/V join the state buffers.
    num_speculative_tokens: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "context_buckets", tuple(sorted(int(b) for b in self.context_buckets)))
        if self.token_buckets is not None:
            object.__setattr__(self, "token_buckets", tuple(sorted({int(b) for b in self.token_buckets})))
        for value, name in ((self.tp_degree, "tp_degree"), (self.batch_size, "batch_size"),
                            (self.max_length, "max_length")):
            if value < 1:
                raise UnsupportedConfigError(f"{name} must be >= 1, got {value}")
        if self.lnc not in (1, 2):
            raise UnsupportedConfigError(f"lnc must be 1 or 2 on trn2, got {self.lnc}")
        ctx = self.ctx_batch_size
        if ctx is not None and not 1 <= ctx <= self.batch_size:
            raise UnsupportedConfigError(f"ctx_batch_size {ctx} must lie in 1..batch_size ({self.batch_size})")
        if not self.context_buckets or self.context_buckets[0] < 2:
            raise UnsupportedConfigError(f"context_buckets must be lengths >= 2 (a 1-token graph is token "
                                         f"generation), got {self.context_buckets}")
        if self.context_buckets[-1] > self.max_length:
            raise UnsupportedConfigError(f"context_buckets {self.context_buckets[-1]} exceeds max_length "
                                         f"{self.max_length}: raise max_length or drop the bucket")
        for value, name, allowed in ((self.dtype, "dtype", DTYPES), (self.moe_backend, "moe_backend", MOE_BACKENDS),
                                     (self.deltanet_kernel, "deltanet_kernel", DELTANET_KERNELS),
                                     (self.attention_kernel, "attention_kernel", ATTENTION_KERNELS),
                                     (self.moe_kernel, "moe_kernel", MOE_KERNELS)):
            if value not in allowed:
                raise UnsupportedConfigError(f"{name} {value!r} is not one of {allowed}")
        tkg = self.token_generation_buckets
        if not tkg or tkg[0] < 1 or tkg[-1] != self.max_length:
            raise UnsupportedConfigError(f"token_buckets {tkg} must be lengths in 1..max_length whose largest is "
                                         f"max_length ({self.max_length}): a decode step may attend to every slot")
        if self.moe_block_size < 1:
            raise UnsupportedConfigError(f"moe_block_size must be >= 1, got {self.moe_block_size}")
        if self.gdr_chunk_size < 1 or self.gdr_chunk_size & (self.gdr_chunk_size - 1):
            raise UnsupportedConfigError(f"gdr_chunk_size must be a power of two, got {self.gdr_chunk_size}")
        if self.output_logits and not self.on_device_sampling:
            raise UnsupportedConfigError("output_logits adds the logits beside on-device sampled tokens: it needs "
                                         "on_device_sampling=True (without it the logits are the output already)")
        if not 0 <= self.num_speculative_tokens <= 3:
            raise UnsupportedConfigError(f"num_speculative_tokens must be in 0..3, got {self.num_speculative_tokens}")
        if self.num_speculative_tokens and self.num_speculative_tokens + 1 in self.context_buckets:
            raise UnsupportedConfigError(
                f"context bucket {self.num_speculative_tokens + 1} equals the verify graph's length (NxDI routes a "
                "call by its length): drop that bucket or change num_speculative_tokens")
        if self.num_speculative_tokens and self.max_length <= self.num_speculative_tokens + 1:
            raise UnsupportedConfigError(f"max_length {self.max_length} leaves no room for verify steps of "
                                         f"{self.num_speculative_tokens + 1} slots: raise max_length")
        if self.num_speculative_tokens and (self.on_device_sampling or self.output_logits):
            raise UnsupportedConfigError("num_speculative_tokens: the verify graph is greedy and returns tokens only "
                                         "(no sampler, no logits): drop on_device_sampling and output_logits")
        if self.deltanet_kernel == "nkilib" and any(b % NKILIB_GDN_CHUNK for b in self.context_buckets):
            raise UnsupportedConfigError(f"deltanet_kernel 'nkilib' needs context buckets that are multiples of "
                                         f"{NKILIB_GDN_CHUNK}, got {self.context_buckets}")

    @property
    def context_batch(self) -> int:
        return self.batch_size if self.ctx_batch_size is None else self.ctx_batch_size

    @property
    def max_context_length(self) -> int:
        return self.context_buckets[-1]

    @property
    def token_generation_buckets(self) -> tuple[int, ...]:
        """The token-generation graphs' cache buckets (``token_buckets`` or the default doubling)."""
        if self.token_buckets is not None:
            return self.token_buckets
        return default_token_buckets(self.max_length)

    def with_overrides(self, **changes: Any) -> "NeuronSettings":
        """A copy with some fields changed (None values are ignored, so argparse defaults pass through)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def check_settings_fit_model(settings: NeuronSettings, text: TextConfig) -> None:
    """What the settings alone cannot check: the TP split of this model's heads, experts and vocabulary,
    and the cache length against its positions. One rule for ``inference_config`` and the CLI, which
    runs it before the slow checkpoint checks."""
    check_tp_supported(text, settings.tp_degree)
    if settings.max_length > text.max_position_embeddings:
        raise UnsupportedConfigError(f"max_length {settings.max_length} exceeds the model's max_position_embeddings "
                                     f"{text.max_position_embeddings}: lower max_length")


def default_token_buckets(max_length: int) -> tuple[int, ...]:
    """Powers of two from TOKEN_BUCKET_MIN below ``max_length``, then ``max_length``."""
    buckets, size = [], TOKEN_BUCKET_MIN
    while size < max_length:
        buckets.append(size)
        size *= 2
    return (*buckets, max_length)


# NxDI's OnDeviceSamplingConfig as vLLM-Neuron builds it: per-request parameters (one row of
# sampling_params per request) choose greedy or sampling; global_topk bounds the candidates.
ON_DEVICE_SAMPLING = {"dynamic": True, "do_sample": True, "deterministic": False, "global_topk": 256}

# The run settings that NxDI's own config does not carry, which a vLLM user sets under this key of
# override_neuron_config: --additional-config '{"override_neuron_config": {"qwen35": {...}}}'.
# Everything else (TP, batch, buckets, dtype, sampling) comes from vLLM's arguments.
SERVING_OVERRIDE_KEY = "qwen35"
SERVING_OVERRIDE_FIELDS = ("moe_backend", "deltanet_kernel", "attention_kernel", "moe_kernel", "gdr_chunk_size",
                           "moe_block_size", "compiler_args")


def serving_overrides(raw: Any) -> dict[str, Any]:
    """Check the ``qwen35`` object of override_neuron_config: known names, valid values."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UnsupportedConfigError(f'override_neuron_config "{SERVING_OVERRIDE_KEY}" must be a JSON object, '
                                     f"got {raw!r}")
    unknown = sorted(set(raw) - set(SERVING_OVERRIDE_FIELDS))
    if unknown:
        raise UnsupportedConfigError(f'override_neuron_config "{SERVING_OVERRIDE_KEY}" has unknown field(s) '
                                     f"{unknown}; known: {list(SERVING_OVERRIDE_FIELDS)} (TP, batch, buckets, dtype "
                                     "and sampling come from vLLM's own arguments)")
    NeuronSettings(**raw)  # the field checks (kernels, MoE backend, sizes) with everything else at its default
    return dict(raw)


def neuron_config_kwargs(settings: NeuronSettings) -> dict[str, Any]:
    """Keywords for NxDI's ``MoENeuronConfig``: every name exists at the pinned release (tested).

    Token-generation buckets: every graph aliases the same full-length state buffers; a bucket's graph
    reads only its first ``bucket`` cache slots (``model.nxdi_step.attended_slots``).
    """
    kwargs: dict[str, Any] = {
        "tp_degree": settings.tp_degree,
        "logical_nc_config": settings.lnc,
        "batch_size": settings.batch_size,
        "ctx_batch_size": settings.context_batch,
        "tkg_batch_size": settings.batch_size,
        "max_batch_size": settings.batch_size,
        "kv_cache_batch_size": settings.batch_size,
        "is_continuous_batching": True,  # rows are chosen by seq_ids in every graph
        "seq_len": settings.max_length,
        "max_context_length": settings.max_context_length,
        "max_length": settings.max_length,
        "padding_side": "right",
        "torch_dtype": settings.dtype,
        "cast_type": "config",  # the model instance restores fp32 for the recurrent state afterwards
        "enable_bucketing": True,
        "context_encoding_buckets": list(settings.context_buckets),
        "token_generation_buckets": list(settings.token_generation_buckets),
        "save_sharded_checkpoint": settings.save_sharded_checkpoint,
        "output_logits": settings.output_logits,
        "on_cpu": settings.on_cpu,
        "moe_tp_degree": settings.tp_degree,
        "moe_ep_degree": 1,
        "router_config": {"act_fn": "softmax", "dtype": "float32"},
        "fused_qkv": False,
        "sequence_parallel_enabled": False,
        # >0: NxDI builds a verify graph of K+1 slots (its "speculation model") instead of the 1-token one
        "speculation_length": settings.num_speculative_tokens + 1 if settings.num_speculative_tokens else 0,
    }
    if settings.on_device_sampling:
        kwargs["on_device_sampling_config"] = dict(ON_DEVICE_SAMPLING)
    if settings.moe_backend == "nxd":
        kwargs["blockwise_matmul_config"] = {"block_size": 512, "logical_nc_config": settings.lnc}
    return kwargs


# Instance presets. 35B-A3B fits TP 4 on a trn2.3xlarge (1 chip, LNC 2: 4 ranks); the larger models
# need a trn2.48xlarge (16 chips: 64 ranks at LNC 2). The roofline CLI says whether a preset fits.
PRESETS: dict[str, NeuronSettings] = {
    "trn2.3xlarge": NeuronSettings(tp_degree=4),
    "trn2.48xlarge": NeuronSettings(tp_degree=8),
    "trn2.48xlarge-tp16": NeuronSettings(tp_degree=16),
    "trn2.48xlarge-tp32": NeuronSettings(tp_degree=32),
}
INSTANCE_OF_PRESET = {name: name.split("-")[0] for name in PRESETS}
# The smallest preset whose per-rank HBM holds the bf16 weights (4096-slot cache, batch 1). 397B-A17B at
# TP 32 holds them only on paper (23.4 of 24 GiB, nothing left for activations): plan fp8 experts for it.
DEFAULT_PRESET_FOR = {"35B-A3B": "trn2.3xlarge", "122B-A10B": "trn2.48xlarge-tp16", "397B-A17B": "trn2.48xlarge-tp32"}


def preset(name: str, **overrides: Any) -> NeuronSettings:
    """A named preset with some fields changed."""
    if name not in PRESETS:
        raise UnsupportedConfigError(f"unknown preset {name!r}; presets: {sorted(PRESETS)}")
    return PRESETS[name].with_overrides(**overrides)


# ---------------------------------------------------------------------------------------------
# the flat Hugging Face attributes NxDI's InferenceConfig carries (it is saved as JSON and reloaded)
# ---------------------------------------------------------------------------------------------

TEXT_ATTRIBUTES = (
    "vocab_size", "hidden_size", "num_hidden_layers", "layer_types", "rms_norm_eps", "num_attention_heads",
    "num_key_value_heads", "head_dim", "rope_theta", "partial_rotary_factor", "mrope_section",
    "linear_conv_kernel_dim", "linear_key_head_dim", "linear_value_head_dim", "linear_num_key_heads",
    "linear_num_value_heads", "num_experts", "num_experts_per_tok", "moe_intermediate_size",
    "shared_expert_intermediate_size", "tie_word_embeddings", "max_position_embeddings", "pad_token_id",
    "mtp_num_hidden_layers",
)


def text_attributes(text: "TextConfig") -> dict[str, Any]:
    """JSON-ready attributes of a text config, plus the names NxD's MoE helpers read
    (num_local_experts, intermediate_size = per-expert size, n_shared_experts 0: our shared expert
    is gated, NxD's is not). The dense family keeps its MLP's intermediate_size."""
    flat = {name: getattr(text, name) for name in TEXT_ATTRIBUTES}
    flat["layer_types"] = list(text.layer_types)
    flat["mrope_section"] = list(text.mrope_section)
    flat["eos_token_id"] = list(text.eos_token_ids)
    flat.update(model_type=_text_model_type(text.is_moe), hidden_act="silu", num_local_experts=text.num_experts,
                intermediate_size=text.moe_intermediate_size if text.is_moe else text.intermediate_size,
                n_shared_experts=0)
    return flat


def _text_model_type(is_moe: bool) -> str:
    return "qwen3_5_moe_text" if is_moe else "qwen3_5_text"


def text_from_attributes(source: Any) -> "TextConfig":
    """Rebuild the :class:`TextConfig` from an object (or dict) carrying :func:`text_attributes`."""
    from .hf_config import parse_model_config

    get = source.get if isinstance(source, dict) else lambda name, default=None: getattr(source, name, default)
    raw = {name: get(name) for name in TEXT_ATTRIBUTES}
    raw["model_type"] = _text_model_type(bool(raw.get("num_experts")))
    raw["intermediate_size"] = get("intermediate_size")  # the dense MLP's (ignored for MoE)
    raw["hidden_act"] = "silu"
    raw["rope_parameters"] = {"rope_type": "default", "rope_theta": raw.pop("rope_theta"),
                              "partial_rotary_factor": raw.pop("partial_rotary_factor"),
                              "mrope_section": raw.pop("mrope_section"), "mrope_interleaved": True}
    eos = get("eos_token_id")
    return parse_model_config(raw, eos_token_ids=tuple(eos) if eos else None).text
