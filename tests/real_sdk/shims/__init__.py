"""Import shims for the closed-source Neuron binaries, so the real NxDI / NxD Python runs in NxDI's CPU
mode on a machine without the Neuron SDK.

Shimmed: torch_neuronx, neuronxcc, libneuronxla, nki, nkilib, torch_xla and torch.classes.neuron (and
torchvision, whose CPU build is not on PyPI: see ``symbols.VLLM_LOADER_PLACEHOLDERS``) - exactly the
modules and names listed in :mod:`.symbols`. Each name is a placeholder that raises
NotImplementedError naming itself when called, except the few CPU mode really uses
(``symbols.CPU_MODE``). A module or name the list lacks is an ImportError, so a new dependency of the
SDK sources shows up instead of being papered over.

:func:`install` does nothing where the real SDK is installed (a trn2 host): there the same tests run
against it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys

import torch

from .placeholder import Placeholder, ShimModule
from .symbols import CPU_MODE, PLACEHOLDERS, module_names, symbol_count

ROOTS = ("torch_neuronx", "neuronxcc", "libneuronxla", "nki", "nkilib", "torch_xla",
         "torchvision")  # torchvision: no CPU build on PyPI (symbols.VLLM_LOADER_PLACEHOLDERS)
TORCH_CLASSES = "torch.classes.neuron"

__all__ = ["install", "real_sdk_installed", "symbol_count", "Placeholder"]


def real_sdk_installed() -> bool:
    """Is the real torch-neuronx importable here? (False once the shims are installed: they are only
    installed when it is not.)"""
    if any(isinstance(f, ShimFinder) for f in sys.meta_path):
        return False
    module = sys.modules.get("torch_neuronx")
    if module is not None:
        return not isinstance(module, ShimModule)
    return importlib.util.find_spec("torch_neuronx") is not None


def build_module(name: str) -> ShimModule:
    module = ShimModule(name)
    module.__path__ = []
    module.__dict__.update({n: Placeholder(f"{name}.{n}") for n in PLACEHOLDERS.get(name, ())})
    module.__dict__.update(CPU_MODE.get(name, {}))
    return module


class ShimFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the listed shim modules, and only those."""

    def __init__(self) -> None:
        self.modules = set(module_names()) - {TORCH_CLASSES}

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] not in ROOTS:
            return None
        if fullname not in self.modules:
            raise ModuleNotFoundError(f"{fullname} is not in tests/real_sdk/shims/symbols.py: the SDK sources "
                                      "import a closed-SDK module the shims do not list", name=fullname)
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        return build_module(spec.name)

    def exec_module(self, module) -> None:
        pass


def install() -> bool:
    """Install the shims unless the real SDK is importable; True when they are (now) installed."""
    if any(isinstance(f, ShimFinder) for f in sys.meta_path):
        return True
    if real_sdk_installed():
        return False
    sys.meta_path.insert(0, ShimFinder())
    torch.classes.neuron = build_module(TORCH_CLASSES)
    return True
