"""The Trainium2 settings on the command line, under NxDI ``inference_demo``'s flag names.

Where a setting means what an ``inference_demo`` flag means, it takes that flag's name
(``--tp-degree``, ``--batch-size``, ``--ctx-batch-size``, ``--seq-len``,
``--context-encoding-buckets``, ``--token-generation-buckets``, ``--logical-nc-config``,
``--torch-dtype``, ``--on-device-sampling``, ``--output-logits``, ``--save-sharded-checkpoint``);
the names of the earlier compile script stay as aliases (``--tp``, ``--lnc``, ``--buckets``,
``--max-length``, ``--dtype``). Bucket lists take NxDI's form (``128 512 2048``) or ours (``128,512,2048``).
Every unset flag keeps the ``--preset``'s value.
"""

from __future__ import annotations

import argparse

from ..config.neuron_settings import (
    ATTENTION_KERNELS,
    DELTANET_KERNELS,
    DTYPES,
    MOE_BACKENDS,
    MOE_KERNELS,
    PRESETS,
    NeuronSettings,
    preset,
)
from ..errors import InputError, UnsupportedConfigError
from .options import MAX_TP, int_range, name_flags

# NeuronSettings field -> the flag that sets it, so a refused setting is named as the user typed it
FIELD_FLAGS = {
    "tp_degree": "--tp-degree", "lnc": "--logical-nc-config", "batch_size": "--batch-size",
    "ctx_batch_size": "--ctx-batch-size", "max_length": "--seq-len", "context_buckets": "--context-encoding-buckets",
    "dtype": "--torch-dtype", "on_device_sampling": "--on-device-sampling", "output_logits": "--output-logits",
    "moe_backend": "--moe-backend", "deltanet_kernel": "--deltanet-kernel", "attention_kernel": "--attention-kernel",
    "token_buckets": "--token-generation-buckets", "moe_kernel": "--moe-kernel",
}


def add_neuron_settings_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Neuron settings (a preset, then overrides; NxDI inference_demo names)")
    group.add_argument("--preset", choices=sorted(PRESETS), default="trn2.3xlarge",
                       help="instance preset: trn2.3xlarge = TP 4; trn2.48xlarge = TP 8; -tp16 / -tp32 variants")
    group.add_argument("--tp-degree", "--tp", dest="tp_degree", type=int_range(1, MAX_TP), help="tensor-parallel ranks")
    group.add_argument("--logical-nc-config", "--lnc", dest="lnc", type=int, choices=[1, 2],
                       help="logical NeuronCore config (2 on trn2)")
    group.add_argument("--batch-size", type=int, help="rows of the state buffers = decode batch")
    group.add_argument("--ctx-batch-size", type=int,
                       help="rows per context-encoding call (default 1: each prefill alone, safe for running rows)")
    group.add_argument("--seq-len", "--max-length", dest="seq_len", type=int,
                       help="cache slots per row: prompt + generated tokens (NxDI seq_len = max_length)")
    group.add_argument("--context-encoding-buckets", "--buckets", dest="context_encoding_buckets", nargs="+", metavar="N",
                       help="context-encoding graph lengths, e.g. 128 512 2048")
    group.add_argument("--token-generation-buckets", nargs="+", metavar="N",
                       help="token-generation graphs by the cache slots they read; the largest must be --seq-len "
                            "(default: doubling from 512 up to --seq-len)")
    group.add_argument("--torch-dtype", "--dtype", dest="dtype", choices=DTYPES,
                       help="weights and activations (the DeltaNet recurrent state is always fp32)")
    group.add_argument("--on-device-sampling", action="store_true", default=None, help="greedy sampling on device")
    group.add_argument("--output-logits", action="store_true", default=None,
                       help="return the logits beside on-device sampled tokens")
    group.add_argument("--save-sharded-checkpoint", action=argparse.BooleanOptionalAction, default=None,
                       help="pre-shard the weights into the compiled directory (default) or shard at every load")
    group.add_argument("--moe-backend", choices=MOE_BACKENDS,
                       help="ours: SparseMoe static form; nxd: NxD RouterTopK + ExpertMLPsV2 (untested on hw)")
    group.add_argument("--deltanet-kernel", choices=DELTANET_KERNELS,
                       help="ours: qwen35_neuron.kernels NKI; nkilib: nki-library gdn_cte/gdn_tkg if installed; torch")
    group.add_argument("--attention-kernel", choices=ATTENTION_KERNELS, help="ours (NKI, if present) or torch")
    group.add_argument("--moe-kernel", choices=MOE_KERNELS,
                       help="decode experts (--moe-backend ours): ours (NKI, reads the chosen experts in place) or torch")
    group.add_argument("--compiler-args", help="replace NxDI's per-graph compiler flags (--lnc is added)")


def parse_int_list(values: list[str] | None, flag: str) -> tuple[int, ...] | None:
    """``["128", "512"]`` or ``["128,512"]`` -> (128, 512); None stays None."""
    if values is None:
        return None
    items = [item.strip() for value in values for item in value.split(",")]
    try:
        out = tuple(int(item) for item in items)
    except ValueError as err:
        raise InputError(f"{flag} takes integers, e.g. {flag} 128 512 2048, got {' '.join(values)!r}") from err
    if not out or any(n < 1 for n in out):
        raise InputError(f"{flag} takes positive lengths, got {' '.join(values)!r}")
    return out


def settings_from_args(args: argparse.Namespace) -> NeuronSettings:
    """The preset with every given flag applied; a flag that names an impossible setting is an error."""
    for flag, value in (("--tp-degree", args.tp_degree), ("--batch-size", args.batch_size),
                        ("--ctx-batch-size", args.ctx_batch_size), ("--seq-len", args.seq_len)):
        if value is not None and value < 1:
            raise InputError(f"{flag} must be >= 1, got {value}")
    buckets = parse_int_list(args.context_encoding_buckets, "--context-encoding-buckets")
    tkg = parse_int_list(args.token_generation_buckets, "--token-generation-buckets")
    try:
        settings = preset(args.preset, tp_degree=args.tp_degree, lnc=args.lnc, batch_size=args.batch_size,
                          ctx_batch_size=args.ctx_batch_size, context_buckets=buckets, max_length=args.seq_len,
                          dtype=args.dtype, moe_backend=args.moe_backend, deltanet_kernel=args.deltanet_kernel,
                          attention_kernel=args.attention_kernel, moe_kernel=args.moe_kernel,
                          on_device_sampling=args.on_device_sampling,
                          output_logits=args.output_logits, save_sharded_checkpoint=args.save_sharded_checkpoint,
                          compiler_args=args.compiler_args, token_buckets=tkg)
    except UnsupportedConfigError as err:
        raise InputError(f"--preset {args.preset} with these flags: {with_flag_names(str(err))}") from err
    return settings


def with_flag_names(message: str) -> str:
    """A NeuronSettings message with its field names replaced by the flags that set them."""
    return name_flags(message, FIELD_FLAGS)
