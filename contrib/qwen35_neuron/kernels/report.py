"""Kernel report: our NKI kernels and AWS's nki-library kernels, run in the CPU emulator side by side.

Everything printed is *modelled, uncalibrated*: instruction streams recorded by the emulator and
priced by its trn2 cost model (see cost_model.py; its per-instruction constants come from docs and
are not fitted to measurements). One table per TP degree with a row per (kernel, LNC): the busiest
engine's busy time (a lower bound on any schedule of those instructions) and the makespan of the
model's in-order, dependency-respecting schedule. nki-library's gdn_tkg / gdn_cte run on the same
inputs as our decode / prefill kernels (each in its own layout), when the fetched sources are on
this machine (~/.cache/qwen35-neuron/sources); without them the report shows ours only and says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .nkilib_sources import load_nkilib, missing_line
from .nki_ops import load_kernel

# Qwen3.5-35B-A3B: 16 key / 32 value DeltaNet heads of 128, conv kernel 4; attention 16 query
# heads and 2 KV heads of 256 (KV replicated when TP > 2).
K_HEADS, V_HEADS, HEAD_DK, CONV_K = 16, 32, 128, 4
Q_HEADS, KV_HEADS, ATTN_D = 16, 2, 256
HIDDEN, MOE_I, TOP_K, REPORT_EXPERTS = 2048, 512, 8, 32  # expert_decode's cost does not depend on E: 32 of 256
LNCS = (1, 2)


@dataclass(frozen=True)
class Case:
    """One kernel at one shape: how to get it and its inputs, and what it is compared with."""

    kernel: str          # row label
    source: str          # "ours" or "nki-library"
    shape: str
    load: Callable[[], Any]
    inputs: Callable[[Dict[str, np.ndarray]], tuple]
    versus: str = ""     # for nki-library rows: our kernel they are set beside


@dataclass(frozen=True)
class Row:
    case: Case
    lnc: int
    busiest_us: float
    engine: str
    makespan_us: float
    instructions: int


def _bf16(x: np.ndarray) -> np.ndarray:
    import ml_dtypes
    return x.astype(ml_dtypes.bfloat16)


def _draw(rng: np.random.Generator, batch: int, seq: int, hk: int, hv: int) -> Dict[str, np.ndarray]:
    """One draw of DeltaNet inputs in our layouts ([B, S, H, D]); every kernel's inputs derive from it."""
    f32 = np.float32
    return {
        "q": rng.standard_normal((batch, seq, hk, HEAD_DK), dtype=f32),
        "k": rng.standard_normal((batch, seq, hk, HEAD_DK), dtype=f32),
        "v": rng.standard_normal((batch, seq, hv, HEAD_DK), dtype=f32),
        "g": -rng.random((batch, seq, hv), dtype=f32),
        "beta": rng.random((batch, seq, hv), dtype=f32),
        "a": rng.standard_normal((batch, seq, hv), dtype=f32),
        "b": rng.standard_normal((batch, seq, hv), dtype=f32),
        "a_log": rng.standard_normal(hv, dtype=f32) * 0.5,
        "dt_bias": rng.standard_normal(hv, dtype=f32) * 0.1,
        "z": rng.standard_normal((batch, seq, hv, HEAD_DK), dtype=f32),
        "norm_w": np.ones(HEAD_DK, f32),
        "state": 0.1 * rng.standard_normal((batch, hv, HEAD_DK, HEAD_DK), dtype=f32),
    }


def _heads_first(x: np.ndarray, rep: int) -> np.ndarray:
    """[B, S, H, D] -> [B*H*rep, S, D]: GQA-expanded heads folded into the batch (AWS's layout)."""
    x = np.repeat(x, rep, axis=2) if rep > 1 else x
    return np.ascontiguousarray(np.moveaxis(x, 2, 1).reshape(-1, *x.shape[1:2], *x.shape[3:]))


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt((x * x).sum(-1, keepdims=True) + 1e-6)


def _ours_fused(d):
    return (_bf16(d["q"]), _bf16(d["k"]), _bf16(d["v"]), d["a"], d["b"], d["a_log"], d["dt_bias"],
            _bf16(d["z"]), d["norm_w"], d["state"].copy(), 1e-6)


def _nkilib_tkg(d):
    rep = d["v"].shape[2] // d["q"].shape[2]
    bh = lambda x, r=1: np.ascontiguousarray(np.repeat(x, r, axis=2)[:, 0].reshape(-1, HEAD_DK))  # noqa: E731
    flat = lambda x: np.ascontiguousarray(x[:, 0].reshape(-1))  # noqa: E731
    return (_bf16(bh(d["q"], rep)), _bf16(bh(d["k"], rep)), _bf16(bh(d["v"])), flat(d["b"]), flat(d["a"]),
            d["a_log"], d["dt_bias"], _bf16(bh(d["z"])), d["norm_w"],
            np.ascontiguousarray(d["state"].reshape(-1, HEAD_DK, HEAD_DK)))


def _ours_prefill(d):
    return _bf16(d["q"]), _bf16(d["k"]), _bf16(d["v"]), d["g"], d["beta"], d["state"].copy()


def _nkilib_cte(d):
    rep = d["v"].shape[2] // d["q"].shape[2]
    per_head = lambda x: np.ascontiguousarray(np.moveaxis(x, 2, 1).reshape(-1, x.shape[1]))  # noqa: E731
    return (_bf16(_heads_first(_l2(d["q"]), rep)), _bf16(_heads_first(_l2(d["k"]), rep)),
            _bf16(_heads_first(d["v"], 1)), per_head(d["beta"]), _bf16(per_head(d["g"])), HEAD_DK ** -0.5)


def _cases(tp: int, seq: int, batch: int, with_nkilib: bool) -> List[Tuple[Case, Tuple[int, int]]]:
    """(case, (rows, tokens) of its input draw) at the per-rank shapes of one TP degree."""
    hk, hv = K_HEADS // tp, V_HEADS // tp
    hq, hkv = Q_HEADS // tp, max(1, KV_HEADS // tp)
    chans = (2 * K_HEADS + V_HEADS) * HEAD_DK // tp
    ours = lambda name: (lambda: load_kernel(name))  # noqa: E731
    decode = f"B={batch} Hk={hk} Hv={hv} D=128"
    prefill = f"B=1 S={seq} Hk={hk} Hv={hv} D=128"

    def attention(d):
        rng = np.random.default_rng(1)
        q = _bf16(rng.standard_normal((1, hq, seq, ATTN_D), dtype=np.float32))
        k, v = (_bf16(rng.standard_normal((1, hkv, seq, ATTN_D), dtype=np.float32)) for _ in range(2))
        return q, k, v, np.arange(seq, dtype=np.int32)[None], ATTN_D ** -0.5, 0

    def conv(length, rows):
        def build(d):
            rng = np.random.default_rng(2)
            x = _bf16(rng.standard_normal((rows, length, chans), dtype=np.float32))
            st = _bf16(rng.standard_normal((rows, chans, CONV_K - 1), dtype=np.float32))
            w = _bf16(rng.standard_normal((chans, CONV_K), dtype=np.float32))
            return x, st, w, np.full(rows, length, np.int32)
        return build

    def experts(d):
        rng = np.random.default_rng(3)
        gate_up = _bf16(rng.standard_normal((REPORT_EXPERTS, 2 * MOE_I // tp, HIDDEN), dtype=np.float32))
        down = _bf16(rng.standard_normal((REPORT_EXPERTS, HIDDEN, MOE_I // tp), dtype=np.float32))
        ids = np.stack([rng.permutation(REPORT_EXPERTS)[:TOP_K] for _ in range(batch)]).astype(np.int32)
        x = _bf16(rng.standard_normal((batch, HIDDEN), dtype=np.float32))
        return x, rng.random((batch, TOP_K), dtype=np.float32), ids, gate_up, down

    cases = [
        (Case("gdn_decode_fused", "ours", decode + " (gates + gated RMSNorm folded)",
              ours("gdn_decode_fused"), _ours_fused), (batch, 1)),
        (Case("gdn_prefill_bf16", "ours", prefill + " (bf16 operands, fp32 state)",
              ours("gdn_prefill_bf16"), _ours_prefill), (1, seq)),
        (Case("gdn_prefill", "ours", prefill + " (fp32 operands)", ours("gdn_prefill"), _ours_prefill), (1, seq)),
        (Case("flash_attention_d256", "ours", f"B=1 S={seq} Hq={hq} Hkv={hkv} D=256 causal",
              ours("flash_attention_d256"), attention), (1, 1)),
        (Case("causal_conv1d_cte", "ours", f"B=1 S={seq} C={chans}", ours("causal_conv1d_cte"), conv(seq, 1)), (1, 1)),
        (Case("causal_conv1d_tkg", "ours", f"B={batch} C={chans}", ours("causal_conv1d_tkg"), conv(1, batch)), (1, 1)),
        (Case("expert_decode", "ours", f"B={batch} k={TOP_K} H={HIDDEN} I={MOE_I // tp} (chosen experts read in place)",
              ours("expert_decode"), experts), (1, 1)),
    ]
    if with_nkilib:
        cases.insert(1, (Case("gdn_tkg", "nki-library", decode + " (same inputs, GQA-expanded)",
                              lambda: load_nkilib("experimental.gdn.gdn_tkg", "gdn_tkg"), _nkilib_tkg,
                              versus="gdn_decode_fused"), (batch, 1)))
        cases.insert(4, (Case("gdn_cte", "nki-library", prefill + " (same inputs, heads as batch)",
                              lambda: load_nkilib("experimental.gdn.gdn_cte", "gdn_cte"), _nkilib_cte,
                              versus="gdn_prefill_bf16"), (1, seq)))
    return cases


def kernel_rows(tp: int, seq: int = 512, batch: int = 2, lncs: Sequence[int] = LNCS, seed: int = 0,
                with_nkilib: bool = True) -> List[Row]:
    """Run every case of one TP degree at each LNC; one Row per (kernel, LNC)."""
    from .nki_emulator import run_kernel
    rows = []
    draws: Dict[Tuple[int, int], Dict[str, np.ndarray]] = {}
    for case, (b, s) in _cases(tp, seq, batch, with_nkilib):
        if (b, s) not in draws:
            draws[(b, s)] = _draw(np.random.default_rng(seed), b, s, K_HEADS // tp, V_HEADS // tp)
        kernel = case.load()
        for lnc in lncs:
            _, run = run_kernel(kernel, *case.inputs(draws[(b, s)]), lnc=lnc)
            cost = run.cost
            rows.append(Row(case, lnc, cost.busy_bound_ns / 1e3, cost.bottleneck, cost.modelled_ns / 1e3,
                            sum(cost.instructions.values())))
    return rows


def _table(rows: List[Row]) -> List[str]:
    lines = [f"  {'kernel':<22} {'source':<12} {'LNC':>3} {'busiest engine us':>22} {'makespan us':>12} "
             f"{'instr':>7}  shape"]
    for r in rows:
        lines.append(f"  {r.case.kernel:<22} {r.case.source:<12} {r.lnc:>3} {r.busiest_us:>13.1f} "
                     f"({r.engine:<6}) {r.makespan_us:>12.1f} {r.instructions:>7d}  {r.case.shape}")
    return lines


def _ratios(rows: List[Row]) -> List[str]:
    """nki-library row / our row at the same LNC: > 1 means ours is modelled faster."""
    ours = {(r.case.kernel, r.lnc): r for r in rows if r.case.source == "ours"}
    lines = []
    for r in rows:
        mine = ours.get((r.case.versus, r.lnc)) if r.case.versus else None
        if mine:
            lines.append(f"  LNC {r.lnc}: nki-library {r.case.kernel} / our {mine.case.kernel}: busiest engine "
                         f"{r.busiest_us / mine.busiest_us:.2f}x, makespan {r.makespan_us / mine.makespan_us:.2f}x")
    return lines


def kernel_report(tp_degrees: Sequence[int] = (4, 8), seq: int = 512, batch: int = 2,
                  seed: int = 0, lncs: Sequence[int] = LNCS) -> str:
    """Run every kernel at the per-rank shapes of each TP degree; return the report text."""
    from .nki_emulator.cost_model import __doc__ as model_doc
    absent = missing_line("nki-library comparison")
    lines = ["NKI kernel report - modelled, uncalibrated trn2 costs from the CPU emulator (not measured).",
             "Cost model (per NeuronCore-v3):"]
    lines += ["  " + ln.strip() for ln in (model_doc or "").splitlines()[2:] if ln.strip()]
    if absent:
        lines.append(absent)
    for tp in tp_degrees:
        rows = kernel_rows(tp, seq, batch, lncs, seed, with_nkilib=absent is None)
        lines.append(f"\n=== TP {tp}: per-rank shapes of Qwen3.5-35B-A3B (modelled, uncalibrated) ===")
        lines += _table(rows) + _ratios(rows)
    return "\n".join(lines)


if __name__ == "__main__":
    print(kernel_report())
