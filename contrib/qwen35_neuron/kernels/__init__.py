"""NKI kernels for Qwen3.5, each beside its PyTorch twin."""
from __future__ import annotations

from types import ModuleType


def ensure_nki() -> ModuleType:
    """Make `import nki` work before kernel modules load: real NKI if installed, else the
    CPU emulator. Cheap and idempotent."""
    from .nki_emulator.install import install_emulator
    return install_emulator()
