"""Without the Neuron SDK, importing the neuron layer raises one ImportError that says what to do."""

from __future__ import annotations

import importlib
import sys

import pytest

import fake_sdk


@pytest.mark.skipif(fake_sdk.SDK_PRESENT, reason="the Neuron SDK is installed here")
def test_import_without_sdk_names_every_missing_package_and_the_fix():
    fake_sdk.purge_neuron_layer()
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


def test_import_names_only_what_is_missing(fake_sdk_modules, monkeypatch):
    monkeypatch.delitem(sys.modules, "torch_neuronx")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ImportError) as info:
        importlib.import_module("qwen35_neuron.neuron")
    message = str(info.value)
    assert "torch-neuronx (module torch_neuronx)" in message
    assert "neuronx-distributed-inference" not in message
