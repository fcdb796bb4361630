"""The vLLM tier: ``vllm serve``'s path to our model with the real vLLM 0.16.0 and vllm-neuron 0.5.0 loader.

Its tests (``test_vllm_*.py``) are collected only in the tier's venv (``bash .ci/tiers/20-vllm.sh``:
vLLM 0.16.0 installed --no-deps on the CPU torch, transformers 4.57, this package installed so its
``vllm.general_plugins`` entry point exists, the vllm-neuron source on PYTHONPATH). Elsewhere (the main
suite, transformers 5) one test says why and skips.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REAL_SDK = HERE.parent / "real_sdk"  # the NxDI tier's harness and shims, reused here
for path in (REAL_SDK, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from vllm_tier import TIER_ABSENT, TIER_COMMAND  # noqa: E402

collect_ignore_glob = ["test_vllm_*.py"] if TIER_ABSENT else []

if not TIER_ABSENT:
    # What transformers knew before any vLLM code ran: the plugin, not the test, must register qwen3_5_moe.
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    QWEN35_KNOWN_AT_START = "qwen3_5_moe" in CONFIG_MAPPING
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a config-only directory must never send vLLM to the hub


def pytest_addoption(parser) -> None:
    parser.addoption("--real-vllm-data", default=None,
                     help="directory written by tests/real_sdk/write_reference.py (tiny checkpoints and the "
                          "transformers 5 reference tokens)")


def pytest_configure(config) -> None:
    if config.getoption("--real-vllm-data", default=None) and TIER_ABSENT:
        raise pytest.UsageError(f"--real-vllm-data was given, but {TIER_ABSENT}")


@pytest.fixture(scope="session")
def tier_data(request) -> Path:
    path = request.config.getoption("--real-vllm-data", default=None)
    if not path:
        pytest.skip(f"pass --real-vllm-data DIR (`{TIER_COMMAND}` writes it)")
    return Path(path)


@pytest.fixture(scope="session")
def reference(tier_data) -> dict:
    """prompt key -> transformers 5 greedy tokens, for the default tiny checkpoint."""
    import json

    from sdk_cases import REFERENCE_FILE

    return json.loads((tier_data / REFERENCE_FILE).read_text())["tokens"]["default"]


@pytest.fixture(scope="session")
def published_35b(tmp_path_factory) -> Path:
    from vllm_published import qwen35_35b_config_json, write_config

    return write_config(tmp_path_factory.mktemp("qwen35-35b"), qwen35_35b_config_json())


@pytest.fixture(scope="session")
def published_27b(tmp_path_factory) -> Path:
    from vllm_published import qwen35_27b_config_json, write_config

    return write_config(tmp_path_factory.mktemp("qwen35-27b"), qwen35_27b_config_json())


@pytest.fixture
def neuron_platform(monkeypatch):
    """vllm-neuron's platform as vLLM's current platform, as on a trn2 host (its plugin returns it when
    /dev/neuron* exists); its config overrides applied the way ``vllm serve`` applies them. vLLM modules
    imported earlier in this process bound the CPU's platform by name: they get the Neuron one too."""
    import vllm.platforms
    from vllm_neuron.platform import NeuronPlatform

    platform, previous = NeuronPlatform(), vllm.platforms.current_platform
    monkeypatch.setattr(vllm.platforms, "_current_platform", platform)
    for module in list(sys.modules.values()):
        if getattr(module, "current_platform", None) is previous:
            monkeypatch.setattr(module, "current_platform", platform)
    NeuronPlatform.pre_register_and_update()
    return platform
