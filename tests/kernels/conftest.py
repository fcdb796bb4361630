"""Kernel tests: every NKI kernel against its PyTorch twin, run in the CPU emulator (or on the
real NKI simulator when `nki` is installed)."""

from __future__ import annotations

import pytest

from qwen35_neuron.kernels import ensure_nki


@pytest.fixture(scope="session", autouse=True)
def _nki() -> None:
    ensure_nki()
