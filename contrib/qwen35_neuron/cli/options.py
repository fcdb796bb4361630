"""Command-line options shared by the subcommands, and their translation into a RunConfig."""

from __future__ import annotations

import argparse

from ..config import Backend, RunConfig
from ..errors import InputError


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=[b.value for b in Backend if b != Backend.NXD], default="dense",
                        help="dense: one CPU rank; simulated-tp: --tp virtual ranks holding shards; "
                             "nki-sim: DeltaNet/attention through our NKI kernels in the CPU emulator")
    parser.add_argument("--tp", type=int, default=None, help="tensor-parallel ranks (simulated-tp; default 2)")
    parser.add_argument("--buckets", default="16,32,64,128", help="context-encoding bucket lengths")
    parser.add_argument("--max-seq-len", type=int, default=256, help="cache capacity per row (tokens)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--moe", choices=["eager", "static"], default="eager",
                        help="eager: experts on their routed tokens; static: traceable shapes")


def run_config_from_args(args: argparse.Namespace, batch_size: int) -> RunConfig:
    backend = Backend(args.backend)
    tp = args.tp if args.tp is not None else (2 if backend == Backend.SIMULATED_TP else 1)
    try:
        buckets = tuple(int(b) for b in str(args.buckets).split(",") if b.strip())
    except ValueError as err:
        raise InputError(f"--buckets must be comma-separated integers, got {args.buckets!r}") from err
    return RunConfig(backend=backend, tp_degree=tp, batch_size=batch_size, context_buckets=buckets,
                     max_seq_len=args.max_seq_len, dtype=args.dtype, moe_impl=args.moe)


def parse_id_list(text: str) -> list[int]:
    """ "1,2,3" -> [1, 2, 3]; "" -> [] (an empty prompt, rejected later with its own message)."""
    items = text.replace(" ", "").split(",")
    if items == [""]:
        return []
    try:
        return [int(t) for t in items]
    except ValueError as err:
        raise InputError(f"--input-ids must be comma-separated integers, got {text!r}") from err
