#!/usr/bin/env bash
# Tier 10: our Qwen35MoeForCausalLM inside the real NxDI 0.9 / NxD 0.18 Python, in NxDI's CPU mode
# (to_cpu, gloo tensor-parallel processes), shims only for the closed Neuron binaries.
# Needs the NxDI and NxD sources under ~/.cache/qwen35-neuron/sources (README, "Test tiers over the real
# SDK sources"); without them it prints one line and passes.
set -euo pipefail
cd "$(dirname "$0")/../.."
main_python=${PYTHON:-python}
export PYTHONPATH="$PWD/contrib${PYTHONPATH:+:$PYTHONPATH}"

locate='from qwen35_neuron.sdk_sources import NXD, NXDI, missing_sources, missing_sources_line, source_tree
import sys
repos = [NXDI, NXD]
if missing_sources(repos):
    print(missing_sources_line("tier 10-nxdi", repos)); sys.exit(3)
print(":".join(str(source_tree(r) / "src") for r in repos))'
status=0
src=$("$main_python" -c "$locate") || status=$?
if [ "$status" -eq 3 ]; then echo "$src"; exit 0; fi
[ "$status" -eq 0 ] || exit "$status"

venv_python=$(.ci/venv.sh nxdi "transformers==4.57.*" safetensors numpy ml_dtypes pillow pytest boto3 requests tenacity)
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
# the transformers 5 reference (Qwen3.5 classes) and the tiny checkpoints, in the main environment
"$main_python" tests/real_sdk/write_reference.py "$data"
PYTHONPATH="$PWD/contrib:$src" "$venv_python" -m pytest -q -p no:cacheprovider --confcutdir tests/real_sdk --disable-warnings \
    tests/real_sdk --real-sdk-data "$data" -rfEs
