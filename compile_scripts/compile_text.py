#!/usr/bin/env python
"""Compile the Qwen3.5 MoE text model for Trainium2: the same as ``qwen35-neuron compile``.

The logic lives in the package's CLI (``qwen35_neuron.cli.compile``); this script stays so the
compile step sits beside compile_vision.py. Flags are NxDI ``inference_demo``'s names (``--tp-degree``,
``--batch-size``, ``--seq-len``, ``--context-encoding-buckets`` ...), the earlier ones (``--out``,
``--tp``, ``--buckets``, ``--max-length``) still work:

    python compile_scripts/compile_text.py --model-path /models/Qwen3.5-35B-A3B \
        --compiled-model-path /compiled/qwen35-tp4 --preset trn2.3xlarge --batch-size 4 \
        --context-encoding-buckets 128 512 2048 --seq-len 4096
"""

from __future__ import annotations

import sys

from qwen35_neuron.cli.main import main as cli_main


def main(argv: list[str] | None = None) -> int:
    return cli_main(["compile", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
