"""``qwen35-neuron``: demo, generate, compile, bench, inspect, kernels, roofline.

Every user mistake (bad config, checkpoint, prompt) ends in one ``error: ...`` line and exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import Qwen35Error
from . import bench, compile, demo, generate, inspect_checkpoint, kernels, roofline

COMMANDS = (demo, generate, compile, bench, inspect_checkpoint, kernels, roofline)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qwen35-neuron",
        description="Qwen3.5 hybrid MoE models on AWS Trainium2, verifiable on a CPU.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        command.add_arguments(sub)
        sub.set_defaults(handler=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except Qwen35Error as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2


def one_line(err: Exception) -> str:
    """A multi-line report (the tensor gate's) folded into its headline and first problem."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else type(err).__name__
    more = len(lines) - 2
    suffix = f" (and {more} more lines: run `qwen35-neuron inspect --model DIR` for the full report)" if more else ""
    return f"{lines[0]}; {lines[1]}{suffix}"


if __name__ == "__main__":
    sys.exit(main())
