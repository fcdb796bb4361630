"""Emulator tests: install the CPU NKI emulator as `nki` (only if the real one is absent)
and give every test a fresh program context, so budgets and counters never leak."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest

from qwen35_neuron.kernels.nki_emulator import fresh_program
from qwen35_neuron.kernels.nki_emulator.context import ProgramContext
from qwen35_neuron.kernels.nki_emulator.install import install_emulator

install_emulator()


@pytest.fixture(autouse=True)
def program() -> Iterator[ProgramContext]:
    with fresh_program() as ctx:
        yield ctx


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
