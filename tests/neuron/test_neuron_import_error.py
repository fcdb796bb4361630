"""Without the Neuron SDK, importing the neuron layer raises one ImportError that says what to do."""

from __future__ import annotations

import importlib
import sys
import types

import pytest

# decided at collection, before any test changes sys.modules: is the real SDK importable here?
SDK_PRESENT = "torch_neuronx" not in sys.modules and importlib.util.find_spec("torch_neuronx") is not None


def forget_neuron_layer(monkeypatch) -> None:
    """Drop imported qwen35_neuron.neuron modules for the test (restored after it), so the import runs again."""
    for name in [n for n in sys.modules if n == "qwen35_neuron.neuron" or n.startswith("qwen35_neuron.neuron.")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.mark.skipif(SDK_PRESENT, reason="the Neuron SDK is installed here")
def test_import_without_sdk_names_every_missing_package_and_the_fix(monkeypatch):
    forget_neuron_layer(monkeypatch)
    with pytest.raises(ImportError) as info:
        importlib.import_module("qwen35_neuron.neuron")
    err = info.value
    message = str(err)
    for package in ("torch-neuronx", "neuronx-distributed", "neuronx-distributed-inference"):
        assert package in message
    assert "pip.repos.neuron.amazonaws.com" in message and "Trainium2" in message and "0.9.17334" in message
    assert err.__cause__ is None and err.__context__ is None  # one error, not a chain from deep inside NxDI
    assert "qwen35_neuron.neuron" not in sys.modules
    # the submodule vLLM-Neuron's registration points at fails the same way
    with pytest.raises(ImportError, match="needs the AWS Neuron SDK"):
        importlib.import_module("qwen35_neuron.neuron.model")


def test_import_names_only_what_is_missing(monkeypatch):
    """NxD and NxDI importable, torch-neuronx not: the error names torch-neuronx alone. The check runs before
    the neuron layer imports anything of the SDK, so two empty modules are all the present packages need."""
    forget_neuron_layer(monkeypatch)
    for name in ("neuronx_distributed", "neuronx_distributed_inference"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.delitem(sys.modules, "torch_neuronx", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ImportError) as info:
        importlib.import_module("qwen35_neuron.neuron")
    message = str(info.value)
    assert "missing torch-neuronx (module torch_neuronx). " in message
    assert " torch-neuronx==2.9.0.2.13.26312 (SDK" in message
    assert "neuronx-distributed-inference" not in message
