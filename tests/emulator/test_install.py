"""Installing the emulator as `nki` only when the real NKI is absent."""
from __future__ import annotations

import sys

import pytest

from qwen35_neuron.kernels import ensure_nki
from qwen35_neuron.kernels.nki_emulator import install

pytestmark = pytest.mark.skipif(install.real_nki_available(), reason="the real nki is installed")


def test_real_nki_is_not_available_here():
    assert install.real_nki_available() is False


def test_placeholder_package_counts_as_absent(tmp_path, monkeypatch):
    fake = tmp_path / "nki"
    fake.mkdir()
    (fake / "__init__.py").write_text('raise ImportError("WRONG PACKAGE")\n')
    saved = {n: sys.modules.pop(n, None) for n in ("nki", "nki.language", "nki.isa")}
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert install.real_nki_available() is False
        assert install.install_emulator().__nki_emulator__
    finally:
        for name, mod in saved.items():
            sys.modules.pop(name, None)
            if mod is not None:
                sys.modules[name] = mod


def test_install_is_idempotent_and_exposes_submodules():
    first = install.install_emulator()
    assert install.install_emulator() is first is ensure_nki()
    import nki
    import nki.isa as nisa
    import nki.language as nl
    from nki.isa import reduce_cmd
    assert nki is first and nki.__nki_emulator__
    assert nl.tile_size.pmax == 128 and nisa.nc_matmul and reduce_cmd.reset_reduce


def test_context_manager_restores_previous_modules():
    saved = {n: sys.modules.pop(n, None) for n in ("nki", "nki.language", "nki.isa")}
    try:
        with install.emulated_nki() as mod:
            assert sys.modules["nki"] is mod
        assert "nki" not in sys.modules
    finally:
        for name, mod in saved.items():
            if mod is not None:
                sys.modules[name] = mod
