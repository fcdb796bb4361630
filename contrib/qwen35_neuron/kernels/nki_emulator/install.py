"""Install the emulator as `nki`, `nki.language`, `nki.isa` when the real NKI is absent.

Kernel modules do `import nki, nki.language as nl, nki.isa as nisa` at import time. On a
Neuron machine the real package must win; elsewhere the emulator stands in. PyPI's `nki`
0.0.1 is a placeholder whose import raises ImportError("WRONG PACKAGE ..."): that counts
as absent.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Dict, Iterator, Optional

_NAMES = ("nki", "nki.language", "nki.isa", "nki.isa.constants", "nki.typing", "nki.dtype", "nki.collectives")


def _is_emulator(mod: Optional[ModuleType]) -> bool:
    return bool(getattr(mod, "__nki_emulator__", False))


def real_nki_available() -> bool:
    """True only if `import nki` gives a working package that is not this emulator."""
    loaded = sys.modules.get("nki")
    if loaded is not None:
        return not _is_emulator(loaded)
    try:
        if importlib.util.find_spec("nki") is None:
            return False
        mod = importlib.import_module("nki")
    except Exception:  # the PyPI placeholder raises ImportError("WRONG PACKAGE")
        sys.modules.pop("nki", None)
        return False
    return not _is_emulator(mod) and hasattr(mod, "jit")


def emulator_modules() -> Dict[str, ModuleType]:
    """The emulator's modules under the names `import nki...` looks up."""
    from . import collectives, dtypes, isa, isa_constants, language, typing_
    package = sys.modules[__package__]
    return {"nki": package, "nki.language": language, "nki.isa": isa, "nki.isa.constants": isa_constants,
            "nki.typing": typing_, "nki.dtype": dtypes, "nki.collectives": collectives}


def install_emulator() -> ModuleType:
    """Return the module `import nki` now gives: the real one if present, else the emulator.

    Idempotent and cheap after the first call.
    """
    current = sys.modules.get("nki")
    if current is not None and (_is_emulator(current) or real_nki_available()):
        return current
    if real_nki_available():
        return sys.modules["nki"]
    modules = emulator_modules()
    sys.modules.update(modules)
    return modules["nki"]


@contextlib.contextmanager
def emulated_nki() -> Iterator[ModuleType]:
    """Install for the duration of a block, then restore whatever `nki` entries were there."""
    saved = {name: sys.modules.get(name) for name in _NAMES}
    module = install_emulator()
    try:
        yield module
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod
