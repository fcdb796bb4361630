"""The real-SDK tier: our NxDI class inside the real NxDI 0.9 / NxD 0.18 Python, in NxDI's CPU mode.

Its tests (``test_nxdi_*.py``) are collected only where NxDI imports beside transformers 4.x: the
tier's own venv (``bash .ci/tiers/10-nxdi.sh``: transformers 4.57, the NxDI and NxD sources on
PYTHONPATH) or a trn2 host's NxDI venv (the installed SDK, no shims). Elsewhere - the main
environment with transformers 5 - one test says so and skips. The transformers 5 reference tokens
and the tiny checkpoints come from ``write_reference.py`` (main environment) via ``--real-sdk-data``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from sdk_tier import TIER_ABSENT, TIER_COMMAND  # noqa: E402

collect_ignore_glob = ["test_nxdi_*.py"] if TIER_ABSENT else []


def pytest_addoption(parser) -> None:
    parser.addoption("--real-sdk-data", default=None,
                     help="directory written by tests/real_sdk/write_reference.py (tiny checkpoints and the "
                          "transformers 5 reference tokens) for the real-SDK tier")


@pytest.fixture(scope="session")
def tier_data(request) -> Path:
    path = request.config.getoption("--real-sdk-data", default=None)
    if not path:
        pytest.skip("pass --real-sdk-data DIR, written by `python tests/real_sdk/write_reference.py DIR` in an "
                    f"environment with transformers 5 (`{TIER_COMMAND}` does both)")
    return Path(path)


@pytest.fixture(scope="session")
def reference(tier_data) -> dict:
    """config name -> prompt key -> transformers 5 greedy tokens."""
    from sdk_cases import REFERENCE_FILE

    return json.loads((tier_data / REFERENCE_FILE).read_text())["tokens"]


@pytest.fixture(scope="session")
def text_runs(tier_data):
    """``get(config, tp)``: every rank's results of the text job (run once per config and TP)."""
    from sdk_cases import VARIANTS
    from sdk_harness import run_ranks

    cache: dict = {}

    def get(config: str, tp: int) -> list[dict]:
        if (config, tp) not in cache:
            cache[(config, tp)] = run_ranks(tp, "text", model_dir=str(tier_data / config), tp=tp, variants=VARIANTS)
        return cache[(config, tp)]

    return get


def pytest_configure(config) -> None:
    """Asked to run the tier (data given) where it cannot: an error, never a silent skip."""
    if config.getoption("--real-sdk-data", default=None) and TIER_ABSENT:
        raise pytest.UsageError(f"--real-sdk-data was given, but the {TIER_ABSENT}")
