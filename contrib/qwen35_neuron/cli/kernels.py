"""``qwen35-neuron kernels``: the modelled trn2 cost of each NKI kernel at the real per-rank shapes."""

from __future__ import annotations

import argparse

from ..errors import InputError

NAME = "kernels"
HELP = ("run our NKI kernels and nki-library's gdn_tkg / gdn_cte (when their sources are fetched) through "
        "the CPU emulator at Qwen3.5-35B-A3B per-rank shapes, at LNC 1 and 2, and print busiest-engine "
        "and makespan figures (modelled, uncalibrated)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tp", type=int, nargs="+", default=[4, 8], help="TP degrees whose per-rank shapes to use")
    parser.add_argument("--seq", type=int, default=512,
                        help="prefill / attention sequence length (up to what flash_attention_d256 holds in SBUF)")
    parser.add_argument("--batch", type=int, default=2, help=f"rows per decode launch, 1..{MAX_BATCH}")
    parser.add_argument("--lnc", type=int, nargs="+", default=[1, 2], choices=[1, 2],
                        help="logical NeuronCore degrees to launch each kernel at")


MAX_BATCH = 128  # decode rows per launch the report models (a trn2 decode batch is far smaller)


# Qwen3.5-35B-A3B head counts the per-rank kernel shapes are cut from
SHARDED_HEADS = {"attention heads": 16, "DeltaNet key heads": 16, "DeltaNet value heads": 32}


def max_seq() -> int:
    """The longest sequence the attention kernel runs: K^T and V of every key stay in SBUF (bf16, head_dim
    256), in whole key tiles."""
    from ..kernels import ensure_nki
    from ..kernels.report import ATTN_D

    ensure_nki()  # the kernel module imports nki (the real one, or the emulator in its place)
    from ..kernels.flash_attention_d256 import KT, KV_RESIDENT_BYTES

    bytes_per_key = 2 * (ATTN_D // 128) * 2  # K^T and V, ATTN_D/128 partition rows each, 2 bytes
    return KV_RESIDENT_BYTES // bytes_per_key // KT * KT


def run(args: argparse.Namespace) -> int:
    from ..kernels.report import kernel_report  # lazy: installs the emulator as `nki` when needed

    for tp in args.tp:
        bad = [f"{name} ({count})" for name, count in SHARDED_HEADS.items() if tp < 1 or count % tp]
        if bad:
            raise InputError(f"--tp {tp} does not split the 35B-A3B {', '.join(bad)} evenly: use 1, 2, 4, 8 or 16")
    if args.seq < 1 or args.batch < 1:
        raise InputError(f"--seq and --batch must be >= 1, got --seq {args.seq} --batch {args.batch}")
    if args.seq > max_seq():
        raise InputError(f"--seq {args.seq} is longer than flash_attention_d256 keeps in SBUF ({max_seq()} keys of "
                         f"head_dim 256 in bf16): use --seq <= {max_seq()}")
    if args.batch > MAX_BATCH:
        raise InputError(f"--batch {args.batch} is beyond the {MAX_BATCH} decode rows the report models: lower it")

    print(f"running the kernels in the emulator (TP {args.tp}, seq {args.seq}, batch {args.batch}, "
          f"LNC {args.lnc}) ...", flush=True)
    print(kernel_report(tp_degrees=tuple(args.tp), seq=args.seq, batch=args.batch, lncs=tuple(args.lnc)))
    return 0
