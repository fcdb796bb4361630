"""Whether this environment is the vLLM tier's (vLLM 0.16 beside transformers 4.x), decided without
importing vLLM; and the command that runs the tier."""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version

TIER_COMMAND = "bash .ci/tiers/20-vllm.sh"


def _absent_reason() -> str | None:
    try:
        vllm_version = version("vllm")
    except PackageNotFoundError:
        return f"vLLM is not installed here (the tier's own venv has it: {TIER_COMMAND})"
    if importlib.util.find_spec("vllm_neuron") is None:
        return f"vllm-neuron is not on the path (the tier puts its source there: {TIER_COMMAND})"
    if int(version("transformers").split(".")[0]) >= 5:
        return f"transformers {version('transformers')} is installed; the NxDI route pins 4.57 ({TIER_COMMAND})"
    if vllm_version != "0.16.0":
        return f"vLLM {vllm_version} is installed; vllm-neuron 0.5.0 pins 0.16.0 ({TIER_COMMAND})"
    return None


TIER_ABSENT = _absent_reason()
