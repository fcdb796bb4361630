"""``qwen35-neuron inspect``: the tensor gate's report for a checkpoint directory."""

from __future__ import annotations

import argparse

from ..checkpoint.gate import check_checkpoint
from ..config import load_model_config

NAME = "inspect"
HELP = "check a checkpoint's tensors (names, shapes) against its config.json; exit 1 on any problem"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint directory (config.json + safetensors)")


def run(args: argparse.Namespace) -> int:
    config = load_model_config(args.model)
    report = check_checkpoint(args.model, config)
    print(report.format())
    return 0 if report.ok else 1
