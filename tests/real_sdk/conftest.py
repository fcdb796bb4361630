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
# this directory, then tests/ (tiny_models) and tests/neuron (vl_cases): the main suite's test data
for path in (HERE.parent / "neuron", HERE.parent, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from sdk_tier import TIER_ABSENT, TIER_COMMAND  # noqa: E402
from vl_cases import neuron_vl_dir, neuron_vl_images  # noqa: E402,F401 (fixtures shared with tests/neuron)

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
def checkpoint_dirs(tier_data) -> dict[str, str]:
    """The tiny checkpoints by name (``sdk_cases.CONFIGS`` and the main suite's ``TINY_CONFIGS``, seed 1)."""
    return {path.name: str(path) for path in tier_data.iterdir() if (path / "config.json").is_file()}


@pytest.fixture(scope="session")
def tiny_dir(checkpoint_dirs) -> str:
    return checkpoint_dirs["default"]


@pytest.fixture(scope="session")
def nxdi():
    """The real NxDI in this process, one rank: the shims installed (none where the real SDK is) and the
    neuron layer imported over it."""
    import shims
    from sdk_harness import one_rank_world

    shims.install()
    one_rank_world()
    import qwen35_neuron.neuron as neuron

    return neuron


@pytest.fixture
def application(nxdi):
    """``make(model_dir, **settings_changes)``: ``Qwen35MoeForCausalLM`` through NxDI's ``to_cpu()`` in this
    process (TP 1), on the tier's settings (``sdk_cases.settings_kwargs``)."""
    from qwen35_neuron.config.neuron_settings import NeuronSettings
    from sdk_cases import settings_kwargs
    from sdk_harness import build_application

    def make(model_dir: str, app_cls=None, **changes):
        return build_application(str(model_dir), NeuronSettings(**settings_kwargs(1, **changes)), app_cls)

    return make


@pytest.fixture(scope="session")
def text_runs(tier_data):
    """``get(config, tp, variants=True)``: every rank's results of the text job (``sdk_probes.text_job``),
    run once per config, TP degree and variant choice; ``variants`` adds the settings of
    ``sdk_cases.VARIANTS``."""
    from sdk_cases import VARIANTS
    from sdk_harness import run_ranks

    cache: dict = {}

    def get(config: str, tp: int, variants: bool = True) -> list[dict]:
        key = (config, tp, variants)
        if key not in cache:
            cache[key] = run_ranks(tp, "sdk_probes:text_job", model_dir=str(tier_data / config), tp=tp,
                                   variants=VARIANTS if variants else {})
        return cache[key]

    return get


def pytest_configure(config) -> None:
    """Asked to run the tier (data given) where it cannot: an error, never a silent skip."""
    if config.getoption("--real-sdk-data", default=None) and TIER_ABSENT:
        raise pytest.UsageError(f"--real-sdk-data was given, but the {TIER_ABSENT}")
