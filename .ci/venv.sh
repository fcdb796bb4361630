#!/usr/bin/env bash
# Create (once) a tier's own virtual environment and print its python.
# usage: .ci/venv.sh NAME PIP_ARGS... [--then PIP_ARGS...]...  ->  ~/.cache/qwen35-neuron/venvs/NAME/bin/python
# torch 2.13.0 goes in first (the CPU build on local disk) so nothing pulls a CUDA build; then each group
# of PIP_ARGS (groups split by --then, e.g. a --no-deps group after the resolved one) is one `pip install`.
# A stamp of the arguments makes re-runs instant.
set -euo pipefail
name=$1; shift
venv="$HOME/.cache/qwen35-neuron/venvs/$name"
stamp="$venv/.qwen35-stamp"
want="torch==2.13.0 | $*"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q torch==2.13.0 >&2
  group=()
  for arg in "$@" --then; do
    if [ "$arg" = "--then" ]; then
      if [ ${#group[@]} -gt 0 ]; then "$venv/bin/pip" install -q "${group[@]}" >&2; fi
      group=()
    else
      group+=("$arg")
    fi
  done
  echo "$want" > "$stamp"
fi
echo "$venv/bin/python"
