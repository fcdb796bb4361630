"""``qwen35-neuron kernels``: the modelled trn2 cost of each NKI kernel at the real per-rank shapes."""

from __future__ import annotations

import argparse

NAME = "kernels"
HELP = ("run each NKI kernel through the CPU emulator at Qwen3.5-35B-A3B per-rank shapes and print "
        "instructions per engine, DMA bytes, modelled trn2 latency and the roofline bound (modelled)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tp", type=int, nargs="+", default=[4, 8], help="TP degrees whose per-rank shapes to use")
    parser.add_argument("--seq", type=int, default=512, help="prefill / attention sequence length")
    parser.add_argument("--batch", type=int, default=2, help="rows per launch")


def run(args: argparse.Namespace) -> int:
    from ..kernels.report import kernel_report  # lazy: installs the emulator as `nki` when needed

    print(f"running the kernels in the emulator (TP {args.tp}, seq {args.seq}, batch {args.batch}) ...", flush=True)
    print(kernel_report(tp_degrees=tuple(args.tp), seq=args.seq, batch=args.batch))
    return 0
