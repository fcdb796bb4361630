"""`nki.isa.constants`: the ISA enums under the module name kernels import them from."""
from __future__ import annotations

from .isa_dma import dge_mode, oob_mode  # noqa: F401
from .isa_lnc import dma_engine  # noqa: F401
from .isa_scalar import reduce_cmd  # noqa: F401
from .isa_tensor import matmul_perf_mode  # noqa: F401
from .operands import engine  # noqa: F401
