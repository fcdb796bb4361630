"""The emulated `nki.isa` module (imported by kernels as `nisa`).

Every instruction is destination-first and returns None. See API.md for the list, and the
`isa_*` modules for the semantics of each engine's instructions.
"""
from __future__ import annotations

from enum import IntEnum

from . import isa_constants as constants  # noqa: F401 - `nki.isa.constants`
from .isa_dma import dge_mode, dma_compute, dma_copy, dma_transpose, oob_mode  # noqa: F401
from .isa_gpsimd import affine_select, iota, local_gather, nc_n_gather, nonzero_with_count  # noqa: F401
from .isa_lnc import core_barrier, dma_engine, sendrecv  # noqa: F401
from .isa_reduce import (bn_aggr, bn_stats, tensor_partition_reduce, tensor_reduce, tensor_scalar_reduce,  # noqa: F401
                         tensor_tensor_scan)
from .isa_scalar import activation, activation_reduce, reduce_cmd  # noqa: F401
from .isa_tensor import matmul_perf_mode, nc_matmul, nc_transpose  # noqa: F401
from .isa_vector import (memset, nc_stream_shuffle, reciprocal, scalar_tensor_tensor,  # noqa: F401
                         tensor_copy, tensor_copy_predicated, tensor_scalar, tensor_tensor)
from .isa_select import (max8, nc_find_index8, nc_match_replace8, range_select,  # noqa: F401
                         select_reduce)
from .operands import engine  # noqa: F401
from .registers import VirtualRegister, register_alloc, register_load, register_move, register_store  # noqa: F401
from .rules import NkiRuleError as NkiValidationError  # noqa: F401

vector_engine = engine.vector
scalar_engine = engine.scalar
gpsimd_engine = engine.gpsimd
tensor_engine = engine.tensor
unknown_engine = engine.unknown


class nc_version(IntEnum):  # noqa: N801 - NKI spelling
    """Ordered, as kernels compare it (`get_nc_version() >= nc_version.gen3`)."""

    gen2 = 2
    gen3 = 3
    gen4 = 4


def get_nc_version() -> nc_version:
    """The emulator models trn2 (NeuronCore-v3)."""
    return nc_version.gen3
