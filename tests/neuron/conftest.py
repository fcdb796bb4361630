"""Fixtures of the neuron-layer tests: the 35B-A3B config, the trn2 options, the VL test data.

trn2 tests are marked ``neuron`` and skip cleanly without torch-neuronx; the real checkpoint comes
from ``--qwen35-model DIR`` (register it by running ``pytest tests/neuron ...``).
"""

from __future__ import annotations

import pytest

from qwen35_neuron.testing.family_configs import QWEN35_35B
from qwen35_neuron.config import parse_model_config
from vl_cases import neuron_vl_dir, neuron_vl_images  # noqa: F401 (fixtures shared with tests/real_sdk)


@pytest.fixture(scope="session")
def config_35b():
    return parse_model_config(QWEN35_35B)


@pytest.fixture
def model_path(request):
    path = request.config.getoption("--qwen35-model", default=None)
    if not path:
        pytest.skip("pass --qwen35-model DIR (a Qwen3.5 MoE checkpoint) to run the real-model trn2 tests")
    return path
