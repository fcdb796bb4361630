"""Bytes one Neuron graph moves per rank: the TKG / CTE step counted op by op, on meta tensors.

The graph is the Neuron layer's traced forward (``model.nxdi_step.nxdi_text_step``: NxDI's standard
inputs and the VL inputs the wrapper adds, the aliased state buffers of ``neuron_layout.layout``) run on
a per-rank model built from the same ``model/`` modules. It differs from what ``neuron/model.py`` traces
only where the SDK is needed (stated in :data:`STAND_IN`):

- NxD's parallel layers are plain per-rank modules of the same shapes (column: out/R rows, row: in/R
  columns then an all-reduce, embedding: H/R columns then an all-gather, LM head: V/R rows then an
  all-gather of the logits); a collective is one op that reads its input and writes its result;
- every hot op is an NKI kernel, as ``neuron.device_ops.neuron_ops`` resolves them with the default
  settings (our DeltaNet, attention, conv, router and decode-expert kernels, LNC 2): the layout code
  of ``kernels.nki_ops`` runs, and the launch is one op that reads its operands (the decode-expert kernel:
  the chosen experts' rows; the router kernel: its weights once per working program) and writes its
  results (:class:`CountingRunner`);
- the global bf16 cast and the fp32 restore of NxDI's model instance are applied the same way.

Counting rules: :mod:`.byte_counter`. The counts are an upper bound: the compiler fuses ops.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch
from torch import nn

from ..config import TextConfig
from ..config.tp_shapes import local_size
from ..model.nxdi_step import nxdi_text_step
from ..model.model_ops import ModelOps
from ..model.rotary import MultimodalRotary
from ..model.text_model import Qwen35TextModel
from ..neuron_layout.layout import state_buffers
from .byte_counter import ByteCounter, CountResult, distinct_bytes

STAND_IN = (
    "per-rank model from the same model/ modules and the same traced step (model.nxdi_step) as neuron/model.py; "
    "NxD's parallel layers replaced by plain per-rank layers of the same shapes, collectives by one op each; "
    "NKI kernels (neuron_ops with the default settings, LNC 2) counted at their launch: operands read once "
    "(the decode-expert kernel: the chosen experts' rows), results written once"
)


# ---- collectives as single ops ---------------------------------------------------------------------

@torch.library.custom_op("qwen35_graph::all_reduce", mutates_args=())
def all_reduce(x: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (one rank here: identity)."""
    return x.clone()


@all_reduce.register_fake
def _all_reduce_fake(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("qwen35_graph::all_gather", mutates_args=())
def all_gather(x: torch.Tensor, world: int) -> torch.Tensor:
    """Concatenation of every rank's ``x`` along the last dim (here: ``world`` copies)."""
    return torch.cat([x] * world, dim=-1)


@all_gather.register_fake
def _all_gather_fake(x: torch.Tensor, world: int) -> torch.Tensor:
    return x.new_empty(*x.shape[:-1], x.shape[-1] * world)


class _RowLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return all_reduce(super().forward(x))


class _GatheredLinear(nn.Linear):
    def __init__(self, in_features: int, out_features: int, world: int) -> None:
        super().__init__(in_features, out_features, bias=False)
        self.world = world

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return all_gather(super().forward(x), self.world)


class _GatheredEmbedding(nn.Embedding):
    def __init__(self, vocab: int, columns: int, world: int) -> None:
        super().__init__(vocab, columns)
        self.world = world

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return all_gather(super().forward(ids), self.world)


class RankShapesProvider:
    """The ``nxd`` provider's per-rank shapes with plain modules (rank 0 of ``tp_degree``)."""

    rank = 0

    def __init__(self, tp_degree: int) -> None:
        self.tp_degree = tp_degree

    def column(self, in_features: int, out_features: int) -> nn.Module:
        return nn.Linear(in_features, local_size(out_features, self.tp_degree, "column output"), bias=False)

    def row(self, in_features: int, out_features: int) -> nn.Module:
        return _RowLinear(local_size(in_features, self.tp_degree, "row input"), out_features, bias=False)

    def embedding(self, vocab_size: int, hidden_size: int) -> nn.Module:
        return _GatheredEmbedding(vocab_size, -(-hidden_size // self.tp_degree), self.tp_degree)

    def lm_head(self, hidden_size: int, vocab_size: int) -> nn.Module:
        return _GatheredLinear(hidden_size, local_size(vocab_size, self.tp_degree, "vocab_size"), self.tp_degree)

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        return all_reduce(x)

    def sharded(self, cls, *args, **kwargs) -> nn.Module:
        return cls(*args, **kwargs)


# ---- kernels as single ops -------------------------------------------------------------------------

def _like(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.empty(t.shape, dtype=dtype or t.dtype, device=t.device)


# name -> results of one launch at LNC ``lnc``, from the kernels' own output allocations (their
# ``nl.ndarray(..., buffer=nl.shared_hbm)`` lines; tests/kernels/test_kernel_results_table.py checks them)
KERNEL_RESULTS: dict[str, Callable[..., tuple[torch.Tensor, ...]]] = {
    "gdn_prefill": lambda lnc, q, k, v, g, beta, state: (_like(v, torch.float32), _like(state, torch.float32)),
    "gdn_prefill_bf16": lambda lnc, q, k, v, g, beta, state: (_like(v, torch.float32), _like(state, torch.float32)),
    "gdn_decode": lambda lnc, q, k, v, g, beta, state: (_like(v, torch.float32), _like(state, torch.float32)),
    "gdn_decode_fused": lambda lnc, q, k, v, *rest: (_like(v), _like(rest[-2], torch.float32)),
    "flash_attention_d256": lambda lnc, q, *rest: (_like(q),),
    "causal_conv1d_cte": lambda lnc, x, state, w, lens: (_like(x), _like(state)),
    "causal_conv1d_tkg": lambda lnc, x, state, w, lens: (_like(x), _like(state)),
    "expert_decode": lambda lnc, x, *rest: (torch.empty(lnc, *x.shape, dtype=torch.float32, device=x.device),),
    "router_logits": lambda lnc, x, w: (torch.empty(x.shape[0], w.shape[0], dtype=torch.float32, device=x.device),),
}


def _selected_expert_reads(lnc: int, x, weights, ids, gate_up, down) -> list[tuple[torch.Tensor, int]]:
    """expert_decode reads, per (token, expert) pair, that expert's rows only (a DMA by the expert id,
    duplicates included); each program reads the routing and the rows of x of the tokens in its share
    of the pairs (the emulator's HBM count agrees: tested)."""
    top_k = ids.shape[1]
    pairs, per = ids.numel(), -(-ids.numel() // lnc)
    x_rows = sum(len({p // top_k for p in range(g * per, min(pairs, (g + 1) * per))}) for g in range(lnc))
    return [(x, x_rows * distinct_bytes(x[0])), (weights, lnc * distinct_bytes(weights)),
            (ids, lnc * distinct_bytes(ids)), (gate_up, pairs * distinct_bytes(gate_up[0])),
            (down, pairs * distinct_bytes(down[0]))]


def _router_reads(lnc: int, x, weight) -> list[tuple[torch.Tensor, int]]:
    """router_logits: every program with a tile of tokens loads the weights once."""
    working = min(lnc, -(-x.shape[0] // 128))
    return [(x, distinct_bytes(x)), (weight, working * distinct_bytes(weight))]


# kernels whose reads are not "every operand once": name -> (operand, bytes) pairs
KERNEL_READS: dict[str, Callable[..., list[tuple[torch.Tensor, int]]]] = {
    "expert_decode": _selected_expert_reads, "router_logits": _router_reads}


class CountingRunner:
    """A kernel runner for ``kernels.nki_ops.kernel_ops``: each launch is recorded as one op."""

    def __init__(self, counter: ByteCounter, lnc: int = 2) -> None:
        self.counter, self.lnc = counter, lnc

    def __call__(self, name: str, *args):
        results = KERNEL_RESULTS[name](self.lnc, *args)
        reads = None
        if name in KERNEL_READS:
            reads = [(self.counter.buffer_of(t), n) for t, n in KERNEL_READS[name](self.lnc, *args)]
        self.counter.record(f"kernel {name}", args, results, reads)
        return results if len(results) > 1 else results[0]


def neuron_kernel_table(run: Callable, dtype: torch.dtype) -> ModelOps:
    """The ops table ``neuron_ops`` builds with the default settings (every hot op our kernel)."""
    from ..kernels.nki_ops import kernel_ops  # the layout code only: no kernel module is imported

    prefill = "gdn_prefill_bf16" if dtype == torch.bfloat16 else "gdn_prefill"
    return replace(kernel_ops(run, prefill), name="neuron-counted")


# ---- the graphs ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GraphShape:
    """One compiled graph: TKG (``tokens`` 1, ``bucket`` = its cache bucket) or CTE (``tokens`` = bucket)."""

    kind: str  # "tkg" | "cte"
    tp: int
    batch: int  # rows of the graph
    state_rows: int  # rows of the state buffers (NxDI's kv_cache_batch_size)
    bucket: int
    max_length: int = 4096

    @property
    def tokens(self) -> int:
        return 1 if self.kind == "tkg" else self.bucket


def rank_model(text: TextConfig, tp: int, dtype: torch.dtype, ops_for: Callable[[ByteCounter], ModelOps],
               counter: ByteCounter, moe_block_size: int = 128, chunk_size: int = 64) -> Qwen35TextModel:
    """Rank 0's text model on the meta device, cast the way NxDI's model instance casts it."""
    with torch.device("meta"):
        model = Qwen35TextModel(text, RankShapesProvider(tp), moe_impl="static", chunk_size=chunk_size,
                                ops=ops_for(counter), moe_block_size=moe_block_size)
        model = model.to(dtype)  # NxDI's cast_type="config"
        model.rotary.inv_freq = MultimodalRotary(text).inv_freq  # restore_fp32: rotary frequencies
    return model.eval()


def graph_inputs(text: TextConfig, shape: GraphShape, dtype: torch.dtype) -> tuple:
    """NxDI's seven standard inputs after its wrapper's padding, then the VL inputs our wrapper adds."""
    meta = {"device": "meta"}
    b, s = shape.batch, shape.tokens
    mask_width = shape.bucket
    standard = (torch.empty(b, s, dtype=torch.int32, **meta), torch.empty(b, mask_width, dtype=torch.int32, **meta),
                torch.empty(b, s, dtype=torch.int32, **meta), torch.empty(b, dtype=torch.int32, **meta),
                torch.empty(b, 3, **meta), None, None)
    if shape.kind == "tkg":
        vl = (torch.empty(b, dtype=torch.int32, **meta),)
    else:
        vl = (torch.empty(b, s, text.hidden_size, dtype=dtype, **meta), torch.empty(b, s, dtype=torch.int32, **meta),
              torch.empty(b, 3, s, dtype=torch.int32, **meta))
    return standard, vl


def count_graph(text: TextConfig, shape: GraphShape, dtype: torch.dtype = torch.bfloat16,
                ops_for: Callable[[ByteCounter], ModelOps] | None = None) -> CountResult:
    """Count one graph's bytes per rank (rules in :mod:`.byte_counter`)."""
    counter = ByteCounter()
    ops_for = ops_for or (lambda c: neuron_kernel_table(CountingRunner(c), dtype))
    model = rank_model(text, shape.tp, dtype, ops_for, counter)
    states = [torch.empty(buf.shape, dtype=buf.dtype, device="meta")
              for buf in state_buffers(text, shape.state_rows, shape.max_length, dtype, shape.tp)]
    (input_ids, mask, positions, seq_ids, *_), vl = graph_inputs(text, shape, dtype)
    counter.donate(states)
    with torch.no_grad(), counter.tracking(model), counter:
        logits, new_states = nxdi_text_step(model, input_ids, mask, positions, seq_ids, states, vl)
        logits = logits[:, None, :]
    return counter.finish([logits, *new_states], states)


def stage_bytes(result: CountResult) -> dict[str, int]:
    """Bytes by part of the model (folded over layers)."""
    parts = {
        "attention layers": r"\.self_attn",
        "DeltaNet layers": r"\.linear_attn",
        "routed experts": r"\.mlp\.experts",
        "router + shared expert + MoE reduce": r"\.mlp(?!\.experts)",
        "norms / residual / layer glue": r"^layers\.\d+$|layernorm",
        "embedding": r"^embed_tokens",
        "LM head + final norm": r"^(lm_head|norm)$",
    }
    out = {name: result.bytes_where(pattern) for name, pattern in parts.items()}
    out["graph glue (step inputs, state rows, outputs)"] = result.total_bytes - sum(out.values())
    return out


def format_costliest(result: CountResult, n: int = 10) -> list[str]:
    lines = [f"    {'bytes':>10} {'count':>5}  op @ module [input shapes]"]
    for where, op, shapes, count, total in result.costliest(n):
        lines.append(f"    {total / 1e6:>8.1f}MB {count:>5}  {op} @ {where or '(top)'} [{shapes}]")
    return lines


def mb(value: float) -> str:
    return f"{value / 1e6:,.1f} MB"


@dataclass(frozen=True)
class GraphCount:
    shape: GraphShape
    counted: CountResult
    floor_bytes: float  # the roofline's bytes for the same step

    @property
    def ratio(self) -> float:
        return self.counted.total_bytes / self.floor_bytes


def roofline_bytes(text: TextConfig, shape: GraphShape) -> float:
    """The roofline's bytes per rank of the same step (``analysis.roofline``, unchanged definitions)."""
    from .roofline import preset_report

    instance = "trn2.3xlarge" if shape.tp <= 4 else "trn2.48xlarge"
    if shape.kind == "tkg":
        report = preset_report(text, None, instance, tp=shape.tp, batch=shape.batch, max_seq_len=shape.max_length,
                               decode_context=shape.bucket)
        return report.decode.bytes_total
    report = preset_report(text, None, instance, tp=shape.tp, batch=shape.state_rows, max_seq_len=shape.max_length,
                           prefill_buckets=(shape.bucket,), prefill_batch=shape.batch)
    return report.prefill[0].bytes_total


def count_against_roofline(text: TextConfig, shape: GraphShape, dtype: torch.dtype = torch.bfloat16) -> GraphCount:
    return GraphCount(shape, count_graph(text, shape, dtype), roofline_bytes(text, shape))


def describe(count: GraphCount, top: int = 10) -> list[str]:
    """The full block of one graph: totals, ratio, bytes by part, the costliest ops."""
    s = count.shape
    what = (f"TKG TP {s.tp}, batch {s.batch}, cache bucket {s.bucket}" if s.kind == "tkg"
            else f"CTE TP {s.tp}, {s.bucket} tokens x {s.batch} row(s), state rows {s.state_rows}")
    lines = [f"{what}: counted {mb(count.counted.total_bytes)}, roofline {mb(count.floor_bytes)}, "
             f"ratio {count.ratio:.2f}", "  by part:"]
    lines += [f"    {part:<46}{mb(value):>14}" for part, value in stage_bytes(count.counted).items()]
    lines.append(f"  {top} costliest ops (layers folded):")
    lines += format_costliest(count.counted, top)
    return lines
