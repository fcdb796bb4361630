"""CPU emulator of the NKI API subset our kernels use (see API.md).

Installed as `nki` by `install.install_emulator()` when the real NKI is absent; this module
is then what `import nki` returns, so it exposes `jit`, `simulate`, `language` and `isa`
like the real package, plus emulator extras (`run_kernel`, `KernelRun`, `KernelCost`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import isa, language  # noqa: F401
from .cost_model import KernelCost, roofline_ns  # noqa: F401
from .jit import Kernel, KernelRun, fresh_program, jit, run_kernel, simulate  # noqa: F401
from .rules import NkiRuleError  # noqa: F401

dtype: Any = np.dtype  # `nki.dtype` in annotations: dtypes are numpy dtypes here

__nki_emulator__ = True
__version__ = "0.6.0-emulated"
