"""ModelOps tables whose entries run our NKI kernels (torch in, torch out, twin signatures).

Two parts, kept apart on purpose:
- layout code (`gdr_prefill_op`, `conv_op`, `attention_op`, ...): torch-side adaptation of the
  twins' arguments to the kernels' (dtypes, int32 lengths, channel / head-dim padding to the
  kernels' 128 multiples) and back. It is the same on a CPU and on Neuron.
- a runner: how a kernel is launched. `EmulatorRunner` runs it in the CPU NKI emulator (the
  `nki-sim` backend); on Neuron, `qwen35_neuron.neuron.device_ops.NeuronRunner` calls
  `kernel[lnc](*args)` on XLA tensors instead.
Kernel modules are imported lazily, after `ensure_nki()` has made `import nki` work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F

from ..model.model_ops import ModelOps
from . import ensure_nki

KERNEL_NAMES = ("gdn_prefill", "gdn_prefill_bf16", "gdn_decode", "gdn_decode_fused", "flash_attention_d256",
                "causal_conv1d_cte", "causal_conv1d_tkg", "expert_decode", "router_logits")


def load_kernel(name: str) -> Any:
    """The @nki.jit kernel called `name` (one of KERNEL_NAMES), importing NKI or the emulator first."""
    if name not in KERNEL_NAMES:
        raise KeyError(name)
    ensure_nki()
    # the kernel modules import nki at their top: only now can they load
    from . import conv1d, expert_decode, flash_attention_d256, gdn_decode, gdn_prefill, router_logits

    kernels = {"gdn_prefill": gdn_prefill.gdn_prefill, "gdn_prefill_bf16": gdn_prefill.gdn_prefill_bf16,
               "gdn_decode": gdn_decode.gdn_decode, "gdn_decode_fused": gdn_decode.gdn_decode_fused,
               "flash_attention_d256": flash_attention_d256.flash_attention_d256,
               "causal_conv1d_cte": conv1d.causal_conv1d_cte, "causal_conv1d_tkg": conv1d.causal_conv1d_tkg,
               "expert_decode": expert_decode.expert_decode, "router_logits": router_logits.router_logits}
    return kernels[name]


@dataclass
class EmulatorRunner:
    """Runs kernels in the CPU emulator; keeps each launch's KernelRun when `record` is a list."""

    lnc: int = 1
    record: Optional[List[Tuple[str, Any]]] = field(default=None)

    def __call__(self, name: str, *args: Any) -> Any:
        kernel = load_kernel(name)
        from .nki_emulator import run_kernel  # after ensure_nki: real NKI has no run_kernel
        outputs, run = run_kernel(kernel, *args, lnc=self.lnc)
        if self.record is not None:
            self.record.append((name, run))
        return outputs


def _pad_last(x: torch.Tensor, multiple: int) -> torch.Tensor:
    pad = (-x.shape[-1]) % multiple
    return F.pad(x, (0, pad)) if pad else x


def gdr_prefill_op(run: Callable, kernel: str = "gdn_prefill") -> Callable:
    """(q, k, v, g, beta, state, chunk_size) -> (out fp32, state fp32); the kernel picks its
    own chunk size (the math does not depend on it)."""
    def op(q, k, v, g, beta, state, chunk_size=64):
        out, new_state = run(kernel, q.contiguous(), k.contiguous(), v.contiguous(),
                             g.float().contiguous(), beta.float().contiguous(),
                             state.float().contiguous())
        return out.float(), new_state.float()
    return op


def gdr_decode_op(run: Callable) -> Callable:
    """(q, k, v, g, beta, state) -> (out fp32, state fp32), T tokens per row."""
    def op(q, k, v, g, beta, state):
        out, new_state = run("gdn_decode", q.contiguous(), k.contiguous(), v.contiguous(),
                             g.float().contiguous(), beta.float().contiguous(),
                             state.float().contiguous())
        return out.float(), new_state.float()
    return op


def gdr_decode_gated_op(run: Callable) -> Callable:
    """(q, k, v, a, b, A_log, dt_bias, z, norm_weight, state, eps) -> (normed out, state fp32)."""
    def op(q, k, v, a, b, a_log, dt_bias, z, norm_weight, state, eps):
        out, new_state = run("gdn_decode_fused", q.contiguous(), k.contiguous(), v.contiguous(),
                             a.float().contiguous(), b.float().contiguous(), a_log.float().contiguous(),
                             dt_bias.float().contiguous(), z.contiguous(), norm_weight.float().contiguous(),
                             state.float().contiguous(), float(eps))
        return out.to(v.dtype), new_state.float()
    return op


def conv_op(run: Callable) -> Callable:
    """(x [B,S,C], conv_state [B,C,K-1], weight [C,K], valid_len [B]) -> (y, new_state).
    Channels are zero-padded to a multiple of 128 (the kernels' tile) and cut back."""
    def op(x, conv_state, weight, valid_len):
        chans = x.shape[-1]
        xp = _pad_last(x, 128).contiguous()
        sp = _pad_last(conv_state.transpose(1, 2), 128).transpose(1, 2).contiguous()
        wp = _pad_last(weight.to(x.dtype).transpose(0, 1), 128).transpose(0, 1).contiguous()
        kernel = "causal_conv1d_tkg" if x.shape[1] == 1 else "causal_conv1d_cte"
        y, new_state = run(kernel, xp, sp, wp, valid_len.to(torch.int32).contiguous())
        return y[..., :chans], new_state[:, :chans].contiguous()
    return op


def attention_op(run: Callable) -> Callable:
    """(q, k, v, q_positions, scale) -> out. head_dim is zero-padded to a multiple of 128
    (zeros change no score and add zero output columns, which are cut)."""
    def op(q, k, v, q_positions, scale):
        d = q.shape[-1]
        qp, kp, vp = (_pad_last(t, 128).contiguous() for t in (q, k, v.to(q.dtype)))
        out = run("flash_attention_d256", qp, kp, vp, q_positions.to(torch.int32).contiguous(),
                  float(scale), -1)
        return out[..., :d].to(v.dtype)
    return op


def moe_decode_op(run: Callable) -> Callable:
    """(x [N, H], weights [N, k], ids [N, k], gate_up_proj, down_proj) -> [N, H] in x's dtype. The
    expert weights go to the kernel as they are (it reads the chosen rows in place); the programs'
    fp32 partial sums are added here."""
    def op(x, weights, ids, gate_up_proj, down_proj):
        partial = run("expert_decode", x.contiguous(), weights.float().contiguous(), ids.to(torch.int32).contiguous(),
                      gate_up_proj, down_proj)
        return partial.sum(dim=0).to(x.dtype)
    return op


def router_op(run: Callable) -> Callable:
    """(x [N, H], weight [E, H]) -> fp32 logits [N, E]: x in the weight's dtype (the weights go as stored)."""
    def op(x, weight):
        return run("router_logits", x.to(weight.dtype).contiguous(), weight)
    return op


def kernel_ops(run: Callable, prefill_kernel: str = "gdn_prefill", name: str = "nki") -> ModelOps:
    """A ModelOps table whose every entry launches one of our kernels through `run`."""
    return ModelOps(gdr_prefill=gdr_prefill_op(run, prefill_kernel), gdr_decode=gdr_decode_op(run),
                    gdr_decode_gated=gdr_decode_gated_op(run), causal_conv=conv_op(run),
                    attention=attention_op(run), moe_decode=moe_decode_op(run), router_logits=router_op(run),
                    name=name)


def nki_sim_ops(prefill_kernel: str = "gdn_prefill", lnc: int = 1,
                record: Optional[List[Tuple[str, Any]]] = None) -> ModelOps:
    """The `nki-sim` table: every hot op through our kernels in the CPU emulator.

    prefill_kernel: "gdn_prefill" (fp32 matmul operands, equal to the twin to ~1e-6) or
    "gdn_prefill_bf16" (the fast variant). lnc: emulated LNC degree (1 or 2).
    record: a list that receives (kernel name, KernelRun) per launch (counts, modelled cost).
    """
    return kernel_ops(EmulatorRunner(lnc=lnc, record=record), prefill_kernel, "nki-sim")
