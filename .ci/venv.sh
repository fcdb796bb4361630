#!/usr/bin/env bash
# Create (once) a tier's own virtual environment and print its python.
# usage: .ci/venv.sh NAME PIP_ARGS...   ->  ~/.cache/qwen35-neuron/venvs/NAME/bin/python
# torch 2.13.0 goes in first (the CPU build on local disk) so nothing pulls a CUDA build; the rest
# of PIP_ARGS follow in one `pip install`. A stamp of the arguments makes re-runs instant.
set -euo pipefail
name=$1; shift
venv="$HOME/.cache/qwen35-neuron/venvs/$name"
stamp="$venv/.qwen35-stamp"
want="torch==2.13.0 | $*"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q torch==2.13.0 >&2
  if [ $# -gt 0 ]; then "$venv/bin/pip" install -q "$@" >&2; fi
  echo "$want" > "$stamp"
fi
echo "$venv/bin/python"
