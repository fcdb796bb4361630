"""``qwen35-neuron roofline``: capacity and lower-bound latency of a checkpoint on Trainium2 (modelled).

Reads config.json only, so it runs before the weights are downloaded. The figures are a model
(HBM bytes, FLOPs and collectives per step against published per-chip numbers), not measurements;
``qwen35-neuron bench --compiled-model-path`` measures on a trn2 host.
"""

from __future__ import annotations

import argparse
import importlib.util

from ..analysis.hardware import PRESETS
from ..analysis.roofline import preset_report
from ..config import load_model_config
from ..errors import InputError

NAME = "roofline"
HELP = "model HBM per rank, TPOT and TTFT lower bounds of a checkpoint on trn2 (config.json only)"
KERNEL_REPORT_MODULE = "qwen35_neuron.kernels.report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint directory (only config.json is read)")
    parser.add_argument("--tp", type=int, default=None, help="tensor-parallel ranks (default: the instance's)")
    parser.add_argument("--instance", choices=sorted(PRESETS), default=None,
                        help="trn2 instance type (default: trn2.3xlarge for TP <= 4, else trn2.48xlarge)")
    parser.add_argument("--batch", type=int, default=1, help="decode batch (rows decoded together)")
    parser.add_argument("--max-seq-len", type=int, default=4096, help="cache slots per row")
    parser.add_argument("--context", type=int, default=None,
                        help="tokens a decode step attends to (default: --max-seq-len)")
    parser.add_argument("--buckets", default="128,512,2048", help="prefill lengths to model, comma-separated")
    parser.add_argument("--long-contexts", default="32768,131072,262144",
                        help="row lengths whose memory and chunked-prefill TTFT to model (up to the model's "
                             "max_position_embeddings), comma-separated")


def parse_buckets(text: str, flag: str = "--buckets") -> tuple[int, ...]:
    try:
        return tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError as err:
        raise InputError(f"{flag} must be comma-separated integers, got {text!r}") from err


def run(args: argparse.Namespace) -> int:
    config = load_model_config(args.model)
    kwargs = dict(batch=args.batch, max_seq_len=args.max_seq_len, decode_context=args.context,
                  prefill_buckets=parse_buckets(args.buckets),
                  long_contexts=parse_buckets(args.long_contexts, "--long-contexts"))
    if args.tp is not None:
        kwargs["tp"] = args.tp
    instance = args.instance or ("trn2.3xlarge" if (args.tp or 4) <= 4 else "trn2.48xlarge")
    report = preset_report(config.text, config.vision, instance, **kwargs)
    print(report.format())
    if importlib.util.find_spec(KERNEL_REPORT_MODULE) is not None:
        print("\nkernel figures (NKI emulator cost model, modelled): run `qwen35-neuron kernels`")
    return 0
