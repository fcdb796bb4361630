"""``qwen35-neuron inspect``: is this checkpoint intact, and does it match its config.json?

Every file's header is read and checked against the file (a truncated download, a corrupt or
foreign header, an unknown dtype, overlapping tensors: one ``error:`` line naming the file, the
tensor and the fix, exit 2); then the tensor gate compares names, shapes and dtypes with what
config.json requires (its report on stdout, exit 1 on a mismatch). ``--scan-values`` also reads
every tensor once and lists those holding NaN or Inf (exit 2), with progress lines on stderr on a
terminal (or with ``--progress``).
"""

from __future__ import annotations

import argparse
import sys

from ..checkpoint.gate import check_checkpoint
from ..checkpoint.integrity import scan_error, scan_values
from ..checkpoint.reader import CheckpointReader
from ..config import load_model_config
from .progress import Progress, add_progress_options

NAME = "inspect"
HELP = ("check a checkpoint's files (truncation, headers) and tensors (names, shapes, dtypes) against its "
        "config.json, and with --scan-values its values (NaN/Inf); exit 1 on a mismatch, 2 on a corrupt file")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint directory (config.json + safetensors)")
    parser.add_argument("--scan-values", action="store_true",
                        help="read every tensor once and report those holding NaN or Inf (slow for big checkpoints)")
    add_progress_options(parser)


def run(args: argparse.Namespace) -> int:
    config = load_model_config(args.model)
    with CheckpointReader(args.model) as reader:  # every header checked against its file here
        report = check_checkpoint(reader, config)
        print(report.format())
        if not args.scan_values:
            return 0 if report.ok else 1
        problems = scan_values(reader, progress=Progress.from_args(args).bytes(f"scanning {args.model}"))
        if not problems:
            print(f"values: all {len(reader)} tensors finite (no NaN or Inf)")
            return 0 if report.ok else 1
        print(f"values: {len(problems)} tensor(s) hold NaN or Inf:")
        for problem in problems:
            print(f"  {problem.describe()}")
        sys.stdout.flush()
        raise scan_error(reader, problems)
