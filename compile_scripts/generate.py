#!/usr/bin/env python
"""Load a compiled Qwen3.5 MoE model on Trainium2 and generate: the same as
``qwen35-neuron generate --compiled-model-path DIR``.

The logic lives in the package's CLI (``qwen35_neuron.cli.generate``); this script stays as the
"run" step beside the compile scripts. ``--compiled DIR`` is accepted for ``--compiled-model-path``:

    python compile_scripts/generate.py --compiled /compiled/qwen35-tp4 --chat \
        --prompt "What is the capital of France?" --no-thinking --max-new-tokens 32 [--compare-cpu]
"""

from __future__ import annotations

import sys

from qwen35_neuron.cli.main import main as cli_main


def main(argv: list[str] | None = None) -> int:
    return cli_main(["generate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
