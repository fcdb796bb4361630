#!/usr/bin/env bash
# Tier 20: `vllm serve`'s path to our model with the real vLLM 0.16.0 and the vllm-neuron 0.5.0 NxDI loader
# (their Python; NxDI in its CPU mode with the shims of tests/real_sdk standing in for the closed binaries).
# Needs the vllm-neuron, NxDI and NxD sources under ~/.cache/qwen35-neuron/sources (README, "Test tiers over
# the real SDK sources"); without them it prints one line and passes.
set -euo pipefail
cd "$(dirname "$0")/../.."
main_python=${PYTHON:-python}
export PYTHONPATH="$PWD/contrib${PYTHONPATH:+:$PYTHONPATH}"

locate='from qwen35_neuron.sdk_sources import NXD, NXDI, VLLM_NEURON, missing_sources, missing_sources_line, source_tree
import sys
repos = [VLLM_NEURON, NXDI, NXD]
if missing_sources(repos):
    print(missing_sources_line("tier 20-vllm", repos)); sys.exit(3)
print(":".join([str(source_tree(VLLM_NEURON))] + [str(source_tree(r) / "src") for r in (NXDI, NXD)]))'
status=0
src=$("$main_python" -c "$locate") || status=$?
if [ "$status" -eq 3 ]; then echo "$src"; exit 0; fi
[ "$status" -eq 0 ] || exit "$status"

# vLLM 0.16.0 is a CUDA wheel whose requirements would replace the CPU torch: it goes in --no-deps, after the
# packages its config, registry and the vllm-neuron loader import (and NxDI's own import needs).
venv_python=$(.ci/venv.sh vllm "transformers==4.57.*" "huggingface_hub<1.0" safetensors numpy ml_dtypes pillow \
    pytest boto3 requests tenacity pydantic psutil cbor2 gguf aiohttp pyzmq msgspec cloudpickle pybase64 \
    cachetools py-cpuinfo prometheus_client setuptools \
    --then --no-deps vllm==0.16.0)
# our package's metadata, so vLLM finds the vllm.general_plugins entry point (as `pip install --no-deps -e .`
# does on a Neuron host); the code itself comes from this checkout through PYTHONPATH
"$venv_python" -m pip install -q --no-deps --no-build-isolation -e . >/dev/null
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
# tiny checkpoints and the transformers 5 reference tokens, in the main environment (Qwen3.5 classes)
"$main_python" tests/real_sdk/write_reference.py "$data"
HF_HUB_OFFLINE=1 PYTHONPATH="$PWD/contrib:$src" "$venv_python" -m pytest -q -p no:cacheprovider \
    --confcutdir tests/real_vllm tests/real_vllm --real-vllm-data "$data" -rs
