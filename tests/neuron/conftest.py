"""Fixtures of the neuron-layer tests: the 35B-A3B config, the trn2 options, the VL test data.

trn2 tests are marked ``neuron`` and skip cleanly without torch-neuronx; the real checkpoint comes
from ``--qwen35-model DIR`` (register it by running ``pytest tests/neuron ...``).
"""

from __future__ import annotations

import pytest

from qwen35_neuron.testing.family_configs import QWEN35_35B
from qwen35_neuron.config import parse_model_config


@pytest.fixture(scope="session")
def config_35b():
    return parse_model_config(QWEN35_35B)


@pytest.fixture
def model_path(request):
    path = request.config.getoption("--qwen35-model", default=None)
    if not path:
        pytest.skip("pass --qwen35-model DIR (a Qwen3.5 MoE checkpoint) to run the real-model trn2 tests")
    return path


@pytest.fixture(scope="session")
def neuron_vl_dir(tiny_dir, tmp_path_factory) -> str:
    """The shared tiny checkpoint with a small-image preprocessor config (see vl_cases)."""
    from vl_cases import write_vl_checkpoint

    return write_vl_checkpoint(tiny_dir, tmp_path_factory.mktemp("neuron-vl") / "model")


@pytest.fixture(scope="session")
def neuron_vl_images(tmp_path_factory) -> dict[str, str]:
    from vl_cases import write_images

    return write_images(tmp_path_factory.mktemp("neuron-vl-images"))
