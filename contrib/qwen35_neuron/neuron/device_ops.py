"""The ModelOps table of the Neuron graphs: our NKI kernels launched natively with ``kernel[lnc](...)``.

The kernels package owns the torch-side layout of every kernel call (``qwen35_neuron.kernels.nki_ops``:
dtypes, int32 lengths, padding channels / head dims to the kernels' multiples of 128) behind a
*runner*; the CPU emulator is one runner, :class:`NeuronRunner` - ``load_kernel(name)[lnc](*args)``
on the XLA tensors of the traced graph - is the other. So the Neuron graphs run exactly the layout
code the emulator tests cover.

An op whose kernel cannot be had, or whose choice is ``"torch"``, runs its PyTorch twin and says
so in one log line. ``deltanet_kernel="nkilib"`` uses nki-library's ``gdn_cte`` for prefill and
``gdn_tkg`` for decode when the installed nkilib has them (their signatures read from the 2.33
nki-library docs, a newer tree than the pinned 2.29 SDK: unverified). Decode runs at ``gdn_tkg``'s op
boundary, ``ModelOps.gdr_decode_gated`` (raw gate inputs in, gated RMSNorm folded), for our fused
kernel and for theirs alike.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import replace
from typing import Callable

import torch

from ..config import TextConfig
from ..config.neuron_settings import NeuronSettings
from ..kernels import nki_ops
from ..model.gated_delta_rule import l2_normalize
from ..model.model_ops import TORCH_OPS, ModelOps

logger = logging.getLogger(__name__)

NKILIB_GDN = ("nkilib.experimental.gdn", "gdn_cte")
NKILIB_GDN_TKG = ("nkilib.experimental.gdn", "gdn_tkg")
OPS = ("gdr_prefill", "gdr_decode", "gdr_decode_gated", "attention", "causal_conv", "moe_decode", "router_logits")


class NeuronRunner:
    """Launches kernel ``name`` of the kernels package as ``kernel[lnc](*args)`` inside the traced graph."""

    def __init__(self, lnc: int, load_kernel: Callable[[str], Callable]) -> None:
        self.lnc = lnc
        self.load_kernel = load_kernel

    def __call__(self, name: str, *args):
        return self.load_kernel(name)[self.lnc](*args)


def _find(candidates: tuple[tuple[str, str], ...]) -> tuple[Callable | None, str]:
    """The first importable kernel of an installed package (nki-library), or None and why none was."""
    reasons = []
    for module_name, function in candidates:
        try:
            return getattr(importlib.import_module(module_name), function), f"{module_name}.{function}"
        except (ImportError, AttributeError) as err:
            reasons.append(f"{module_name}.{function}: {err}")
    return None, "; ".join(reasons)


def _nkilib_prefill(kernel: Callable, lnc: int) -> Callable:
    """gdn_cte on [B*Hv, S, D] tensors (GQA expanded, q/k unit-normalised here, zero initial state).

    Exact for rows that start fresh (their input state is zero) and rows without real tokens
    (g = 0, beta = 0: the kernel adds nothing and the old state passes through); a continuation
    with real tokens (chunked prefill) is not supported with this kernel: the application refuses it
    before any graph runs (:func:`.chunked_prefill.refuse_continued_prefill`).
    """
    def op(q, k, v, g, beta, state, chunk_size):
        batch, length, k_heads, dk = q.shape
        heads, dv = v.shape[2], v.shape[3]
        rep = heads // k_heads

        def flat(x: torch.Tensor) -> torch.Tensor:  # [B, S, Hv, D] -> [B*Hv, S, D]
            return x.permute(0, 2, 1, 3).reshape(batch * heads, length, x.shape[-1]).to(v.dtype)

        qn = flat(l2_normalize(q.float()).repeat_interleave(rep, dim=2))
        kn = flat(l2_normalize(k.float()).repeat_interleave(rep, dim=2))
        gates = [x.permute(0, 2, 1).reshape(batch * heads, length).float() for x in (beta, g)]
        out, new_state = kernel[lnc](qn, kn, flat(v), gates[0], gates[1], scale=dk ** -0.5)
        out = out.reshape(batch, heads, length, dv).permute(0, 2, 1, 3).float()
        return out, new_state.reshape(batch, heads, dk, dv).float() + state.float()
    return op


def _nkilib_decode(kernel: Callable, lnc: int) -> Callable:
    """gdn_tkg on [B*Hv, D] rows (GQA expanded; raw q/k, gates and z): the gdr_decode_gated boundary,
    one token per row (decode graphs have length 1)."""
    def op(q, k, v, a, b, a_log, dt_bias, z, norm_weight, state, eps):
        batch, _, k_heads, dk = q.shape
        heads, dv = v.shape[2], v.shape[3]
        rep = heads // k_heads

        def rows(x: torch.Tensor) -> torch.Tensor:  # [B, 1, H, D] or [B, 1, H] -> [B*H, D] or [B*H]
            return x[:, 0].reshape(batch * heads, *x.shape[3:])

        out, new_state = kernel[lnc](rows(q.repeat_interleave(rep, dim=2)), rows(k.repeat_interleave(rep, dim=2)),
                                     rows(v), rows(b).float(), rows(a).float(), a_log.float(), dt_bias.float(),
                                     rows(z), norm_weight, state.reshape(batch * heads, dk, dv).float())
        return out.reshape(batch, 1, heads, dv).to(v.dtype), new_state.reshape(batch, heads, dk, dv).float()
    return op


def neuron_ops(settings: NeuronSettings, text: TextConfig) -> ModelOps:
    """The ops table of one compiled model: kernel choices, LNC and dtype from ``settings``."""
    table = _our_table(settings)
    ops = {name: _resolve(name, settings, text, table) for name in OPS}
    return replace(TORCH_OPS, name=f"neuron-lnc{settings.lnc}", **ops)


def _real_nki() -> bool:
    """Native launches need the real nki package (the kernels package would fall back to its CPU emulator)."""
    from ..kernels.nki_emulator.install import real_nki_available

    return real_nki_available()


def _our_table(settings: NeuronSettings) -> dict[str, Callable | str]:
    """Our kernels through the kernels package's layout code (:mod:`qwen35_neuron.kernels.nki_ops`), or
    why not (a string) per op."""
    if not _real_nki():
        return {name: "the nki package of the Neuron SDK is not installed" for name in OPS}
    run = NeuronRunner(settings.lnc, nki_ops.load_kernel)
    prefill = "gdn_prefill_bf16" if settings.dtype == "bfloat16" else "gdn_prefill"
    return {"gdr_prefill": nki_ops.gdr_prefill_op(run, prefill), "gdr_decode": nki_ops.gdr_decode_op(run),
            "gdr_decode_gated": nki_ops.gdr_decode_gated_op(run), "attention": nki_ops.attention_op(run),
            "causal_conv": nki_ops.conv_op(run), "moe_decode": nki_ops.moe_decode_op(run),
            "router_logits": nki_ops.router_op(run)}


def _resolve(name: str, settings: NeuronSettings, text: TextConfig, table) -> Callable:
    twin = getattr(TORCH_OPS, name)
    choice = {"attention": settings.attention_kernel, "moe_decode": settings.moe_kernel,
              "router_logits": settings.moe_kernel}.get(name, settings.deltanet_kernel)
    if choice == "torch":
        logger.info("qwen35_neuron: %s runs the PyTorch twin (chosen in the settings)", name)
        return twin
    dims_ok = max(text.linear_key_head_dim, text.linear_value_head_dim) <= 128
    if name == "gdr_prefill" and choice == "nkilib":
        kernel, where = _find((NKILIB_GDN,))
        if kernel is not None and dims_ok and text.linear_key_head_dim == text.linear_value_head_dim:
            logger.info("qwen35_neuron: gdr_prefill runs nki-library's %s[%d]", where, settings.lnc)
            return _nkilib_prefill(kernel, settings.lnc)
        why = where if kernel is None else "it needs equal DeltaNet head dims <= 128"
        logger.warning("qwen35_neuron: nki-library's gdn_cte cannot be used (%s); using ours", why)
    if name == "gdr_decode_gated" and choice == "nkilib":
        kernel, where = _find((NKILIB_GDN_TKG,))
        if kernel is not None and dims_ok:
            logger.info("qwen35_neuron: gdr_decode_gated runs nki-library's %s[%d]", where, settings.lnc)
            return _nkilib_decode(kernel, settings.lnc)
        why = where if kernel is None else "it needs DeltaNet head dims <= 128"
        logger.warning("qwen35_neuron: nki-library's gdn_tkg cannot be used (%s); using ours", why)
    op = table[name]
    if name in ("gdr_prefill", "gdr_decode", "gdr_decode_gated") and not dims_ok:
        op = "our gated-delta-rule kernels take head dims up to 128"
    if isinstance(op, str) or op is None:
        logger.warning("qwen35_neuron: no NKI kernel for %s (%s): it runs the PyTorch twin on Neuron", name, op)
        return twin
    logger.info("qwen35_neuron: %s runs our NKI kernel at LNC %d", name, settings.lnc)
    return op
