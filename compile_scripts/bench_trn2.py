#!/usr/bin/env python
"""Benchmark a compiled Qwen3.5 MoE model on Trainium2: the same as
``qwen35-neuron bench --compiled-model-path DIR``, writing NxDI's ``benchmark_report.json``.

The logic lives in the package's CLI (``qwen35_neuron.cli.bench``); this script stays as the
benchmark step beside the compile scripts. One case per run, as NxDI's ``inference_demo --benchmark``:

    python compile_scripts/bench_trn2.py --compiled-model-path /compiled/qwen35-tp4 --batch-size 4 \
        --input-length 512 --max-new-tokens 64 --num-runs 20 --benchmark-report-path ./benchmark_report.json
"""

from __future__ import annotations

import sys

from qwen35_neuron.cli.main import main as cli_main


def main(argv: list[str] | None = None) -> int:
    return cli_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
