"""``qwen35-neuron``: demo, generate, compile, bench, inspect, kernels, roofline.

Every user mistake (bad flag, config, checkpoint, prompt) ends in one ``error: ...`` line and exit
code 2, never a traceback (see :mod:`.options`).
"""

from __future__ import annotations

import sys

from . import bench, compile, demo, generate, inspect_checkpoint, kernels, roofline
from .options import CliParser, run_guarded

COMMANDS = (demo, generate, compile, bench, inspect_checkpoint, kernels, roofline)


def build_parser() -> CliParser:
    parser = CliParser(
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

    def parse_and_run() -> int:
        args = parser.parse_args(argv)
        if getattr(args, "handler", None) is None:
            parser.print_help()
            return 2
        return args.handler(args)

    return run_guarded(parse_and_run)


if __name__ == "__main__":
    sys.exit(main())
