"""``qwen35-neuron roofline``: capacity and lower-bound latency of a checkpoint on Trainium2 (modelled).

Reads config.json only, so it runs before the weights are downloaded. The figures are a model
(HBM bytes, FLOPs and collectives per step against published per-chip numbers), not measurements;
``qwen35-neuron bench --compiled-model-path`` measures on a trn2 host.
"""

from __future__ import annotations

import argparse

from ..analysis.hardware import PRESETS
from ..analysis.roofline import LONG_CONTEXTS, preset_report
from ..config import load_model_config
from ..errors import InputError, UnsupportedConfigError
from .options import MAX_TP, POSITIVE, int_list, int_range

NAME = "roofline"
HELP = "model HBM per rank, TPOT and TTFT lower bounds of a checkpoint on trn2 (config.json only)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint directory (only config.json is read)")
    parser.add_argument("--tp", type=int_range(1, MAX_TP), default=None,
                        help="tensor-parallel ranks (default: the instance's)")
    parser.add_argument("--instance", choices=sorted(PRESETS), default=None,
                        help="trn2 instance type (default: trn2.3xlarge for TP <= 4, else trn2.48xlarge)")
    parser.add_argument("--batch", type=POSITIVE, default=1, help="decode batch (rows decoded together)")
    parser.add_argument("--max-seq-len", type=POSITIVE, default=4096, help="cache slots per row")
    parser.add_argument("--context", type=POSITIVE, default=None,
                        help="tokens a decode step attends to (default: --max-seq-len)")
    parser.add_argument("--buckets", type=int_list(1), default=(128, 512, 2048),
                        help="prefill lengths to model, comma-separated")
    parser.add_argument("--long-contexts", type=int_list(1), default=None,
                        help="row lengths whose memory and chunked-prefill TTFT to model (up to the model's "
                             "max_position_embeddings), comma-separated (default: "
                             f"{','.join(map(str, LONG_CONTEXTS))}, those within the model's limit)")


def run(args: argparse.Namespace) -> int:
    config = load_model_config(args.model)
    for flag, value in (("--context", args.context), ("--buckets", max(args.buckets))):
        if value is not None and value > args.max_seq_len:
            raise InputError(f"{flag} {value} is beyond --max-seq-len {args.max_seq_len}: lower it or raise "
                             "--max-seq-len")
    long_contexts, skipped = _long_contexts(args.long_contexts, config.text.max_position_embeddings)
    kwargs = dict(batch=args.batch, max_seq_len=args.max_seq_len, decode_context=args.context,
                  prefill_buckets=args.buckets, long_contexts=long_contexts)
    if args.tp is not None:
        kwargs["tp"] = args.tp
    instance = args.instance or ("trn2.3xlarge" if (args.tp or 4) <= 4 else "trn2.48xlarge")
    try:
        report = preset_report(config.text, config.vision, instance, **kwargs)
    except UnsupportedConfigError as err:
        given = " ".join(f"{flag} {value}" for flag, value in (("--tp", args.tp), ("--instance", args.instance))
                         if value is not None)
        raise InputError(f"{given}: {err}" if given else str(err)) from err
    print(report.format())
    if skipped:
        print(f"\nlong contexts {', '.join(map(str, skipped))} not modelled: beyond the model's "
              f"max_position_embeddings {config.text.max_position_embeddings} (choose lengths with --long-contexts)")
    print("\nkernel figures (NKI emulator cost model, modelled): run `qwen35-neuron kernels`")
    return 0


def _long_contexts(given: tuple[int, ...] | None, limit: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The long contexts to model and the default ones skipped as beyond the model's ``limit``
    (max_position_embeddings). Lengths the user gave beyond it are an error, never dropped."""
    if given is not None:
        beyond = [n for n in given if n > limit]
        if beyond:
            raise InputError(f"--long-contexts {','.join(map(str, beyond))} is beyond the model's "
                             f"max_position_embeddings {limit}: give lengths up to {limit}")
        return tuple(given), ()
    return tuple(n for n in LONG_CONTEXTS if n <= limit), tuple(n for n in LONG_CONTEXTS if n > limit)
