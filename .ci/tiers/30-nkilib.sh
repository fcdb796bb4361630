#!/usr/bin/env bash
# nki-library conformance: AWS's NKI kernels, unmodified, through our emulator against AWS's torch
# references (tests/emulator/nkilib_conformance.py). Needs the fetched sources under
# ~/.cache/qwen35-neuron/sources (nki-library/ and nki-library-gdn/); without them the runner
# prints one line and exits 0. Exit 1 = a kernel failed for a reason not documented as outside
# the emulated subset.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHONPATH="$PWD/contrib" python tests/emulator/nkilib_conformance.py
