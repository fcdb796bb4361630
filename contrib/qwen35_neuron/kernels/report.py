"""Kernel cost report: each kernel run through the CPU emulator at Qwen3.5-35B-A3B per-rank shapes.

Everything printed is *modelled* (the emulator's trn2 cost model, see its cost_model.py), not
measured. Per kernel: instructions per engine, DMA / HBM bytes, the modelled time (in-order
engines, dependency-respecting schedule), the busiest engine (a lower bound on any schedule of
these instructions), and the roofline (HBM bytes / bandwidth, matmul FLOPs / peak). For the
DeltaNet kernels, nki-library's gdn_tkg / gdn_cte are estimated under the same model
(reference_costs.py: our count of their instruction mix, not their code and not measured).
"""

from __future__ import annotations

from typing import Any, Callable, List, Sequence, Tuple

import numpy as np

from .ops import load_kernel
from .reference_costs import Estimate, nkilib_gdn_cte, nkilib_gdn_tkg

# Qwen3.5-35B-A3B: 16 key / 32 value DeltaNet heads of 128, conv kernel 4; attention 16 query
# heads and 2 KV heads of 256 (KV replicated when TP > 2).
K_HEADS, V_HEADS, HEAD_DK, CONV_K = 16, 32, 128, 4
Q_HEADS, KV_HEADS, ATTN_D = 16, 2, 256


def _bf16(x: np.ndarray) -> np.ndarray:
    import ml_dtypes
    return x.astype(ml_dtypes.bfloat16)


def _gdn_inputs(rng: np.random.Generator, batch: int, seq: int, hk: int, hv: int, bf16: bool):
    q, k = (rng.standard_normal((batch, seq, hk, HEAD_DK), dtype=np.float32) for _ in range(2))
    v = rng.standard_normal((batch, seq, hv, HEAD_DK), dtype=np.float32)
    if bf16:
        q, k, v = _bf16(q), _bf16(k), _bf16(v)
    g = -rng.random((batch, seq, hv), dtype=np.float32)
    beta = rng.random((batch, seq, hv), dtype=np.float32)
    state = 0.1 * rng.standard_normal((batch, hv, HEAD_DK, HEAD_DK), dtype=np.float32)
    return q, k, v, g, beta, state


def _cases(tp: int, seq: int, batch: int) -> List[Tuple[str, str, Callable[[np.random.Generator], tuple], Any]]:
    """(label, kernel name, input builder, nki-library estimate or None) for one TP degree."""
    hk, hv = K_HEADS // tp, V_HEADS // tp
    hq, hkv = Q_HEADS // tp, max(1, KV_HEADS // tp)
    chans = (2 * K_HEADS + V_HEADS) * HEAD_DK // tp

    def fused(rng):
        q, k, v, _, _, state = _gdn_inputs(rng, batch, 1, hk, hv, True)
        a, b = (rng.standard_normal((batch, 1, hv), dtype=np.float32) for _ in range(2))
        z = _bf16(rng.standard_normal((batch, 1, hv, HEAD_DK), dtype=np.float32))
        return (q, k, v, a, b, rng.standard_normal(hv, dtype=np.float32),
                rng.standard_normal(hv, dtype=np.float32), z, np.ones(HEAD_DK, np.float32), state, 1e-6)

    def attention(rng):
        q = _bf16(rng.standard_normal((1, hq, seq, ATTN_D), dtype=np.float32))
        k, v = (_bf16(rng.standard_normal((1, hkv, seq, ATTN_D), dtype=np.float32)) for _ in range(2))
        return q, k, v, np.arange(seq, dtype=np.int32)[None], ATTN_D ** -0.5, 0

    def conv(rng, length):
        x = _bf16(rng.standard_normal((batch if length == 1 else 1, length, chans), dtype=np.float32))
        st = _bf16(rng.standard_normal((x.shape[0], chans, CONV_K - 1), dtype=np.float32))
        w = _bf16(rng.standard_normal((chans, CONV_K), dtype=np.float32))
        return x, st, w, np.full(x.shape[0], length, np.int32)

    return [
        (f"gdn_decode B={batch} T=1 Hk={hk} Hv={hv} D=128 (fp32 state)", "gdn_decode",
         lambda rng: _gdn_inputs(rng, batch, 1, hk, hv, True), None),
        (f"gdn_decode_fused B={batch} (gates + gated RMSNorm folded: gdn_tkg's interface)",
         "gdn_decode_fused", fused, nkilib_gdn_tkg(batch, hv)),
        (f"gdn_prefill B=1 S={seq} (fp32 matmul operands, exact)", "gdn_prefill",
         lambda rng: _gdn_inputs(rng, 1, seq, hk, hv, True), nkilib_gdn_cte(1, hv, seq)),
        (f"gdn_prefill_bf16 B=1 S={seq} (bf16 operands, fp32 state)", "gdn_prefill_bf16",
         lambda rng: _gdn_inputs(rng, 1, seq, hk, hv, True), nkilib_gdn_cte(1, hv, seq)),
        (f"flash_attention_d256 B=1 S=T={seq} Hq={hq} Hkv={hkv} D=256 bf16 causal_offset=0",
         "flash_attention_d256", attention, None),
        (f"causal_conv1d_cte B=1 S={seq} C={chans} bf16", "causal_conv1d_cte",
         lambda rng: conv(rng, seq), None),
        (f"causal_conv1d_tkg B={batch} C={chans} bf16", "causal_conv1d_tkg",
         lambda rng: conv(rng, 1), None),
    ]


def _engines(values: dict, fmt: str) -> str:
    return "  ".join(f"{e} {fmt.format(values[e])}" for e in ("Tensor", "Vector", "Scalar", "GpSimd", "DMA"))


def _describe(label: str, run: Any, estimate: Estimate | None) -> List[str]:
    from .nki_emulator.cost_model import HBM_BYTES_PER_NS, PEAK_FLOPS_PER_NS_BF16, PEAK_FLOPS_PER_NS_FP32
    cost = run.cost
    f32 = sum(r.flops for r in run.records if r.fp32_matmul)
    f16 = cost.flops - f32
    hbm_ns = cost.hbm_bytes / HBM_BYTES_PER_NS
    flop_ns = f16 / PEAK_FLOPS_PER_NS_BF16 + f32 / PEAK_FLOPS_PER_NS_FP32
    roof = max(hbm_ns, flop_ns)
    lines = [f"  {label}",
             f"    instructions: {_engines(cost.instructions, '{:d}')}",
             f"    busy (us):    {_engines({k: v / 1e3 for k, v in cost.busy_ns.items()}, '{:.1f}')}",
             f"    DMA bytes {cost.dma_bytes / 1e6:.2f} MB, HBM bytes {cost.hbm_bytes / 1e6:.2f} MB, "
             f"matmul FLOPs {cost.flops / 1e6:.1f} M ({f32 / 1e6:.1f} M fp32)",
             f"    modelled trn2 time {cost.modelled_ns / 1e3:.1f} us; busiest engine "
             f"{cost.busy_bound_ns / 1e3:.1f} us ({cost.bottleneck})",
             f"    roofline: HBM {hbm_ns / 1e3:.1f} us, TensorE {flop_ns / 1e3:.1f} us -> "
             f"{roof / 1e3:.1f} us; modelled / roofline = {cost.modelled_ns / max(roof, 1e-9):.1f}x"]
    if estimate is not None:
        name = "gdn_tkg" if "decode" in label else "gdn_cte"
        lines.append(f"    nki-library {name}, our estimate of its algorithm (not measured): busiest "
                     f"engine {estimate.bound_ns / 1e3:.1f} us "
                     f"({max(estimate.busy, key=estimate.busy.__getitem__)}), instructions "
                     f"{_engines(estimate.count, '{:d}')}; ours busiest "
                     f"{cost.busy_bound_ns / 1e3:.1f} us -> {estimate.bound_ns / cost.busy_bound_ns:.1f}x")
    return lines


def kernel_report(tp_degrees: Sequence[int] = (4, 8), seq: int = 512, batch: int = 2,
                  seed: int = 0) -> str:
    """Run every kernel at the per-rank shapes of each TP degree; return the report text."""
    from .nki_emulator import run_kernel
    from .nki_emulator.cost_model import __doc__ as model_doc
    lines = ["NKI kernel report - MODELLED trn2 costs from the CPU emulator, not measurements.",
             "Cost model (per NeuronCore-v3):"]
    lines += ["  " + ln.strip() for ln in (model_doc or "").splitlines()[2:] if ln.strip()]
    rng = np.random.default_rng(seed)
    for tp in tp_degrees:
        lines.append(f"\n=== TP {tp}: per-rank shapes of Qwen3.5-35B-A3B ===")
        for label, name, build, estimate in _cases(tp, seq, batch):
            (_, run) = run_kernel(load_kernel(name), *build(rng))
            lines += _describe(label, run, estimate)
    return "\n".join(lines)


if __name__ == "__main__":
    print(kernel_report())
