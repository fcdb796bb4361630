"""CPU emulator of the NKI API subset our kernels use (see API.md).

Installed as `nki` by `install.install_emulator()` when the real NKI is absent; this module
is then what `import nki` returns, so it exposes `jit`, `simulate`, `language` and `isa`
like the real package (and `dtype`, `typing`: `nki.dtype` names the dtypes, `import nki.dtype`
gives them as a module), plus emulator extras (`run_kernel`, `KernelRun`, `KernelCost`).
"""
from __future__ import annotations

from . import collectives, dtypes as dtype, isa, language, typing_ as typing  # noqa: F401
from .cost_model import KernelCost, roofline_ns  # noqa: F401
from .jit import Kernel, KernelRun, fresh_program, jit, launch_ranks, run_kernel, simulate  # noqa: F401
from .rules import NkiRuleError  # noqa: F401

__nki_emulator__ = True
__version__ = "0.6.0-emulated"
