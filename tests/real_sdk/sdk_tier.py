"""Whether this interpreter can run the real-SDK tier (decided without importing NxDI)."""

from __future__ import annotations

import importlib.metadata
import importlib.util

TIER_COMMAND = "bash .ci/tiers/10-nxdi.sh"


def tier_absent_reason() -> str | None:
    """Why the real-SDK tier cannot run in this interpreter, or None when it can."""
    try:
        transformers = importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        transformers = None
    if transformers is None or int(transformers.split(".")[0]) >= 5:
        return (f"real-SDK tier not run here (transformers {transformers}; NxDI pins 4.57): it runs in its own "
                f"venv via `{TIER_COMMAND}`")
    if importlib.util.find_spec("neuronx_distributed_inference") is None:
        return (f"real-SDK tier not run here: neuronx_distributed_inference is not importable "
                f"(`{TIER_COMMAND}` puts the fetched sources on PYTHONPATH)")
    return None


TIER_ABSENT = tier_absent_reason()
