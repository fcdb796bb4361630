"""Capacity and roofline model of Qwen3.5 (MoE or dense) on Trainium2, from the config alone (modelled, not measured).

For a TP degree R, a batch and the storage dtypes it counts, per rank: the HBM the model needs
(every weight including all experts, the KV cache at the maximum length, DeltaNet states), and for
one decode step and one prefill per bucket the bytes read, the FLOPs and the all-reduces. The
lower bound on a step is ``max(bytes / HBM bandwidth, FLOPs / peak) + all-reduce time``: real
kernels only come close to it. Activation traffic, kernel launch overheads and the vision encoder's
run time are not modelled.

Long contexts (32k, 128k, 262k by default): the HBM a row of that length needs (KV in the attention
layers only - 10 of 40 in 35B-A3B - while the DeltaNet state stays one fixed-size matrix per head)
and the TTFT lower bound of its chunked prefill, each chunk of the largest prefill bucket reading
the KV of the chunks before it.

Sharding assumptions (those of the planned neuron layer): attention and DeltaNet heads, expert and
shared-expert intermediate, LM-head rows and embedding columns split over R; router, norms and
shared-expert gate replicated; expert parallelism off. Decode reads the weights of ``min(B*k, E)``
experts (NxD's selective loading reads each token's k experts; when B*k >= E it reads all E).
Collectives: one all-reduce after each token mixer and one after each MoE block (shared expert
folded into the MoE reduction), plus one for the embedding and one for the LM head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import TextConfig, VisionConfig
from ..errors import UnsupportedConfigError
from .hardware import GIB, PRESETS, TRN2_3XLARGE, HardwareSpec
from .model_size import ParamCounts, RankShapes, count_params, vision_params

DELTANET_CHUNK = 64  # chunk length assumed for the chunked gated delta rule in prefill
DELTANET_STEP_FLOPS_PER_STATE = 7  # decay, k^T S, delta update (outer product), q S: ~7 flops per state element
LONG_CONTEXTS = (32768, 131072, 262144)  # 32k, 128k and the native 262k context of Qwen3.5


@dataclass(frozen=True)
class StepCost:
    """One graph execution on one rank: bytes by part, FLOPs, all-reduces and the time bounds."""

    name: str
    bytes_by_part: dict[str, float]
    flops: float
    allreduces: int
    allreduce_bytes: float
    time_memory_s: float
    time_compute_s: float
    time_collectives_s: float

    @property
    def bytes_total(self) -> float:
        return sum(self.bytes_by_part.values())

    @property
    def lower_bound_s(self) -> float:
        return max(self.time_memory_s, self.time_compute_s) + self.time_collectives_s

    @property
    def bound_by(self) -> str:
        return "memory" if self.time_memory_s >= self.time_compute_s else "compute"


@dataclass(frozen=True)
class LongContext:
    """One row of length ``length``: what HBM holds, the chunked prefill and a decode step at the end."""

    length: int
    chunk: int  # prefill chunk (the largest prefill bucket)
    kv_bytes: float  # KV of the attention layers at this length
    state_bytes: float  # DeltaNet recurrent + conv state: independent of the length
    hbm_total: float  # weights + KV + states (+ vision) per rank
    prefill_chunks: tuple[StepCost, ...]
    decode: StepCost

    @property
    def ttft_lower_bound_s(self) -> float:
        return sum(c.lower_bound_s for c in self.prefill_chunks)


@dataclass(frozen=True)
class RooflineReport:
    """Everything :func:`roofline` computed; ``format()`` prints it as a table."""

    hardware: HardwareSpec
    tp: int
    batch: int
    dtype_bytes: int
    kv_dtype_bytes: int
    state_dtype_bytes: int
    max_seq_len: int
    decode_context: int
    params: ParamCounts
    hbm_by_part: dict[str, float]
    decode: StepCost
    prefill: tuple[StepCost, ...]
    assumptions: tuple[str, ...] = field(default_factory=tuple)
    long_contexts: tuple[LongContext, ...] = ()
    attention_layers: tuple[int, int] = (0, 0)  # (attention layers, all layers): the layers that keep KV

    @property
    def hbm_total(self) -> float:
        return sum(self.hbm_by_part.values())

    @property
    def hbm_capacity(self) -> float:
        return self.hardware.rank_hbm_bytes

    @property
    def fits(self) -> bool:
        return self.hbm_total <= self.hbm_capacity

    @property
    def tpot_lower_bound_s(self) -> float:
        return self.decode.lower_bound_s

    def ttft_lower_bound_s(self, bucket: int) -> float:
        for cost in self.prefill:
            if cost.name == f"prefill {bucket}":
                return cost.lower_bound_s
        raise KeyError(f"no prefill bucket {bucket}; computed: {[c.name for c in self.prefill]}")

    def format(self) -> str:
        p = self.params
        lines = [
            f"Qwen3.5 {'MoE' if self.params.routed_experts else 'dense'} on Trainium2 -- modelled (not measured)",
            f"hardware : {self.hardware.describe()}",
            f"run      : TP {self.tp}, batch {self.batch}, weights {self.dtype_bytes} B, KV {self.kv_dtype_bytes} B, "
            f"DeltaNet state {self.state_dtype_bytes} B, max length {self.max_seq_len}, decode context "
            f"{self.decode_context}",
            f"params   : total {p.text_total / 1e9:.2f} B text"
            + (f" + {p.vision / 1e9:.2f} B vision" if p.vision else "")
            + f" = {p.total / 1e9:.2f} B; active per token {p.active / 1e9:.2f} B",
            "",
            f"{'HBM per rank':<40}{'GiB':>10}",
        ]
        lines += [f"  {part:<38}{value / GIB:>10.2f}" for part, value in self.hbm_by_part.items()]
        verdict = "fits" if self.fits else "DOES NOT FIT"
        lines.append(f"  {'total / capacity':<38}{self.hbm_total / GIB:>10.2f} / "
                     f"{self.hbm_capacity / GIB:.2f} ({verdict})")
        d = self.decode
        lines += ["", f"{d.name + ' per rank':<40}{'MB read':>10}"]
        lines += [f"  {part:<38}{value / 1e6:>10.2f}" for part, value in d.bytes_by_part.items()]
        lines += [
            f"  {'total':<38}{d.bytes_total / 1e6:>10.2f}",
            f"  FLOPs {d.flops / 1e9:.2f} G; {d.allreduces} all-reduces of {d.allreduce_bytes / 1e3:.1f} kB",
            f"  memory {d.time_memory_s * 1e3:.3f} ms, compute {d.time_compute_s * 1e3:.3f} ms, "
            f"collectives {d.time_collectives_s * 1e3:.3f} ms",
            f"  TPOT >= {d.lower_bound_s * 1e3:.2f} ms ({d.bound_by}-bound; <= {self.batch / d.lower_bound_s:.0f} "
            "tokens/s over the batch)",
            "",
            f"  {'prefill bucket':<16}{'MB read':>10}{'GFLOP':>10}{'mem ms':>9}{'flop ms':>9}{'coll ms':>9}"
            f"{'TTFT >= ms':>12}",
        ]
        for c in self.prefill:
            lines.append(f"  {c.name.split()[-1]:<16}{c.bytes_total / 1e6:>10.1f}{c.flops / 1e9:>10.1f}"
                         f"{c.time_memory_s * 1e3:>9.2f}{c.time_compute_s * 1e3:>9.2f}"
                         f"{c.time_collectives_s * 1e3:>9.2f}{c.lower_bound_s * 1e3:>12.2f}")
        lines += self._format_long_contexts()
        lines += ["", "assumptions:"] + [f"  - {a}" for a in self.assumptions]
        return "\n".join(lines)

    def _format_long_contexts(self) -> list[str]:
        if not self.long_contexts:
            return []
        attn, layers = self.attention_layers
        chunk = self.long_contexts[0].chunk
        lines = ["", f"long contexts, batch 1 (modelled): KV in the {attn} attention layers only (of {layers}); "
                     f"DeltaNet state {self.long_contexts[0].state_bytes / 2**20:.1f} MiB whatever the length; "
                     f"prefill in chunks of {chunk} tokens, each reading the KV before it",
                 f"  {'context':<10}{'KV GiB':>9}{'HBM GiB':>10}{'of':>6}{'fits':>6}{'TTFT >= s':>12}"
                 f"{'TPOT >= ms':>12}"]
        for row in self.long_contexts:
            lines.append(f"  {row.length:<10}{row.kv_bytes / GIB:>9.2f}{row.hbm_total / GIB:>10.2f}"
                         f"{self.hbm_capacity / GIB:>6.0f}{'yes' if row.hbm_total <= self.hbm_capacity else 'NO':>6}"
                         f"{row.ttft_lower_bound_s:>12.3f}{row.decode.lower_bound_s * 1e3:>12.2f}")
        return lines


def roofline(
    text: TextConfig,
    vision: VisionConfig | None = None,
    *,
    hardware: HardwareSpec = TRN2_3XLARGE,
    tp: int = 4,
    batch: int = 1,
    dtype_bytes: int = 2,
    kv_dtype_bytes: int | None = None,
    state_dtype_bytes: int = 4,
    max_seq_len: int = 4096,
    decode_context: int | None = None,
    prefill_buckets: tuple[int, ...] = (128, 512, 2048),
    prefill_batch: int = 1,
    long_contexts: tuple[int, ...] = LONG_CONTEXTS,
) -> RooflineReport:
    """Model one configuration. ``decode_context`` (default ``max_seq_len``) is the length a decode step
    attends to; ``long_contexts`` the row lengths (batch 1) whose memory and chunked-prefill TTFT are
    reported, up to the model's ``max_position_embeddings``."""
    hardware.check_tp(tp)
    if batch < 1 or prefill_batch < 1 or dtype_bytes < 1 or state_dtype_bytes < 1:
        raise UnsupportedConfigError("batch sizes and dtype sizes must be positive")
    kv_bytes = kv_dtype_bytes or dtype_bytes
    context = decode_context if decode_context is not None else max_seq_len
    if not 0 < context <= max_seq_len or any(not 0 < s <= max_seq_len for s in prefill_buckets):
        raise UnsupportedConfigError(f"decode context and prefill buckets must lie in 1..max_seq_len ({max_seq_len})")
    if any(n < 1 for n in long_contexts):
        raise UnsupportedConfigError(f"long contexts must be positive lengths, got {long_contexts}")
    rank = RankShapes.of(text, tp)
    model = _Model(text, rank, hardware, dtype_bytes, kv_bytes, state_dtype_bytes)
    return RooflineReport(
        hardware=hardware, tp=tp, batch=batch, dtype_bytes=dtype_bytes, kv_dtype_bytes=kv_bytes,
        state_dtype_bytes=state_dtype_bytes, max_seq_len=max_seq_len, decode_context=context,
        params=count_params(text, vision),
        hbm_by_part=model.hbm(batch, max_seq_len, vision),
        decode=model.decode(batch, context),
        prefill=tuple(model.prefill(prefill_batch, s) for s in prefill_buckets),
        assumptions=tuple(hardware.assumptions() + (_MODEL_ASSUMPTIONS if text.is_moe else _DENSE_ASSUMPTIONS)),
        long_contexts=tuple(model.long_context(n, max(prefill_buckets), vision) for n in long_contexts
                            if n <= text.max_position_embeddings),
        attention_layers=(model.n_attn, model.layers),
    )


def preset_report(text: TextConfig, vision: VisionConfig | None = None, instance: str = "trn2.3xlarge",
                  **kwargs) -> RooflineReport:
    """:func:`roofline` on a named instance with its default TP degree (override with ``tp=``)."""
    if instance not in PRESETS:
        raise UnsupportedConfigError(f"unknown instance {instance!r}; presets: {sorted(PRESETS)}")
    hardware, default_tp = PRESETS[instance]
    kwargs.setdefault("tp", default_tp)
    return roofline(text, vision, hardware=hardware, **kwargs)


_MODEL_ASSUMPTIONS = [
    "TP shards heads / expert + shared intermediate / LM-head rows / embedding columns; router and norms "
    "replicated; KV heads replicated up to TP when fewer; no expert parallelism",
    "decode reads min(B*k, E) expert shards (NxD selective loading); prefill reads all E once T*k >= E",
    "2 all-reduces per layer (token mixer, MoE incl. shared expert) + 2 (embedding, LM head) of B*S*H elements",
    f"DeltaNet prefill as chunked delta rule, chunk {DELTANET_CHUNK}; decode ~{DELTANET_STEP_FLOPS_PER_STATE} "
    "FLOPs per state element",
    "lower bound = max(memory, compute) + collectives; activations, launch overhead and vision run time not modelled",
]


_DENSE_ASSUMPTIONS = [line.replace("expert + shared intermediate", "MLP intermediate")
                      .replace("; router and norms replicated", "; norms replicated")
                      .replace("MoE incl. shared expert", "MLP")
                      for line in _MODEL_ASSUMPTIONS if "expert shards" not in line]


class _Model:
    """Per-rank byte and FLOP counts for one config, TP degree and set of dtypes."""

    def __init__(self, t: TextConfig, rank: RankShapes, hw: HardwareSpec, w: int, kv: int, state: int) -> None:
        self.t, self.rank, self.hw, self.w, self.kv, self.state = t, rank, hw, w, kv, state
        self.n_attn = len(t.full_attention_layer_ids)
        self.n_lin = len(t.linear_layer_ids)
        self.layers = t.num_hidden_layers

    # ---- weights and states ----
    def _weights(self, experts_read: int, embedding_rows: int, stored: bool = False) -> dict[str, float]:
        """Weight bytes by part: what a step reads, or (``stored``) what HBM holds."""
        t, r, w = self.t, self.rank, self.w
        h = t.hidden_size
        experts = "all" if stored else f"{experts_read} of"
        feed_forward = {
            f"routed experts ({experts} {t.num_experts}, I/R={r.expert_intermediate})":
                self.layers * experts_read * r.expert(t) * w,
            "shared expert + gate": self.layers * r.shared_expert(t) * w,
            "router (replicated)": self.layers * t.num_experts * h * w,
        } if t.is_moe else {f"MLP (I/R={r.mlp_intermediate})": self.layers * r.mlp(t) * w}
        return {
            "attention projections": self.n_attn * r.attention_layer(t) * w,
            "DeltaNet projections": self.n_lin * r.deltanet_layer(t) * w,
            **feed_forward,
            "norms (replicated)": (2 * self.layers + 1) * h * w,
            "LM head (V/R rows)": r.vocab * h * w,
            "embedding (V x H/R)" if stored else f"embedding ({embedding_rows} rows x H/R)":
                embedding_rows * -(-h // r.tp) * w,
        }

    def _kv_bytes(self, batch: int, positions: int) -> float:
        return self.n_attn * 2 * batch * self.rank.kv_heads * positions * self.t.head_dim * self.kv

    def _recurrent_bytes(self, batch: int) -> float:
        t = self.t
        per_row = self.rank.linear_value_heads * t.linear_key_head_dim * t.linear_value_head_dim
        return self.n_lin * batch * per_row * self.state

    def _conv_bytes(self, batch: int) -> float:
        return self.n_lin * batch * self.rank.conv_channels(self.t) * (self.t.linear_conv_kernel_dim - 1) * self.w

    def hbm(self, batch: int, max_seq_len: int, vision: VisionConfig | None) -> dict[str, float]:
        parts = self._weights(self.t.num_experts, self.t.vocab_size, stored=True)
        parts[f"KV cache ({self.n_attn} layers x {max_seq_len})"] = self._kv_bytes(batch, max_seq_len)
        parts["DeltaNet recurrent state"] = self._recurrent_bytes(batch)
        parts["DeltaNet conv state"] = self._conv_bytes(batch)
        if vision is not None:
            parts["vision encoder (rank 0, unsharded)"] = vision_params(vision) * self.w
        return parts

    # ---- FLOPs ----
    def _matmul_params_per_token(self) -> int:
        t, r = self.t, self.rank
        moe = t.num_experts_per_tok * r.expert(t) + r.shared_expert(t) + t.num_experts * t.hidden_size
        feed_forward = moe if t.is_moe else r.mlp(t)
        return self.n_attn * r.attention_layer(t) + self.n_lin * r.deltanet_layer(t) + self.layers * feed_forward

    def _conv_flops(self, tokens: int) -> float:
        return self.n_lin * tokens * self.rank.conv_channels(self.t) * 2 * self.t.linear_conv_kernel_dim

    def _step(self, name: str, parts: dict[str, float], flops: float, tokens: int) -> StepCost:
        hw, tp = self.hw, self.rank.tp
        n_ar = 2 * self.layers + 2
        ar_bytes = tokens * self.t.hidden_size * self.w
        per_ar = 0.0 if tp == 1 else hw.allreduce_latency(tp) + 2 * (tp - 1) / tp * ar_bytes / hw.collective_bandwidth
        return StepCost(
            name=name, bytes_by_part=parts, flops=flops, allreduces=n_ar if tp > 1 else 0, allreduce_bytes=ar_bytes,
            time_memory_s=sum(parts.values()) / hw.rank_hbm_bandwidth,
            time_compute_s=flops / hw.rank_flops,
            time_collectives_s=n_ar * per_ar,
        )

    def decode(self, batch: int, context: int) -> StepCost:
        t, r = self.t, self.rank
        experts_read = min(batch * t.num_experts_per_tok, t.num_experts)
        parts = self._weights(experts_read, batch)
        parts[f"KV cache (read {context}, write 1)"] = self._kv_bytes(batch, context + 1)
        parts["DeltaNet state fp32 (read + write)"] = 2 * self._recurrent_bytes(batch)
        parts["conv state (read + write)"] = 2 * self._conv_bytes(batch)
        state_elems = r.linear_value_heads * t.linear_key_head_dim * t.linear_value_head_dim
        flops = (2 * batch * (self._matmul_params_per_token() + r.vocab * t.hidden_size)
                 + self.n_attn * batch * r.q_heads * 4 * t.head_dim * context
                 + self.n_lin * batch * DELTANET_STEP_FLOPS_PER_STATE * state_elems
                 + self._conv_flops(batch))
        return self._step(f"decode step (context {context})", parts, flops, batch)

    def prefill(self, batch: int, seq: int, past: int = 0) -> StepCost:
        """One CTE call of ``seq`` tokens per row after ``past`` cached ones (a later chunk of a long
        prompt reads the earlier KV and carries the DeltaNet state in)."""
        t, r = self.t, self.rank
        tokens = batch * seq
        parts = self._weights(min(tokens * t.num_experts_per_tok, t.num_experts), tokens)
        if past:
            parts[f"KV cache read ({past})"] = self._kv_bytes(batch, past)
        parts[f"KV cache write ({seq})"] = self._kv_bytes(batch, seq)
        carried = 2 if past else 1  # a continuing chunk reads the state it carries on
        parts["DeltaNet state fp32 (read + write)" if past else "DeltaNet state fp32 (write)"] = \
            carried * self._recurrent_bytes(batch)
        parts["conv state (read + write)" if past else "conv state (write)"] = carried * self._conv_bytes(batch)
        dk, dv = t.linear_key_head_dim, t.linear_value_head_dim
        chunked = 6 * dk * dv + 2 * DELTANET_CHUNK * (dk + dv)
        flops = (2 * tokens * self._matmul_params_per_token() + 2 * batch * r.vocab * t.hidden_size
                 + self.n_attn * batch * r.q_heads * 2 * t.head_dim * seq * (seq + 2 * past)
                 + self.n_lin * tokens * r.linear_value_heads * chunked
                 + self._conv_flops(tokens))
        return self._step(f"prefill {seq}" + (f" after {past}" if past else ""), parts, flops, tokens)

    def long_context(self, length: int, chunk: int, vision: VisionConfig | None) -> LongContext:
        """A row of ``length`` tokens (batch 1): its HBM, its prefill in ``chunk``-token calls, and a
        decode step attending to all of it."""
        starts = range(0, length, chunk)
        return LongContext(
            length=length, chunk=chunk, kv_bytes=self._kv_bytes(1, length),
            state_bytes=self._recurrent_bytes(1) + self._conv_bytes(1),
            hbm_total=sum(self.hbm(1, length, vision).values()),
            prefill_chunks=tuple(self.prefill(1, min(chunk, length - start), start) for start in starts),
            decode=self.decode(1, length),
        )
