"""The emulated `nki.language` module (imported by kernels as `nl`).

Allocation, buffers, dtypes, tile-size constants, loop helpers, SPMD queries, operator
tokens and the convenience ops. See API.md for the exact list.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from . import context
from . import dtypes as dt
from . import rules
from .convenience import device_print, load, matmul, store, transpose  # noqa: F401
from .convenience import reduce_max as max  # noqa: A004 - NKI names
from .convenience import reduce_min as min  # noqa: A004
from .convenience import reduce_sum as sum  # noqa: A004
from .dtypes import (bfloat16, bool_, float4_e2m1fn_x4, float8_e4m3, float8_e4m3fn,  # noqa: F401
                     float8_e4m3fn_x4, float8_e5m2, float8_e5m2_x4, float16, float32, int8, int16, int32,
                     tfloat32, uint8, uint16, uint32)
from .memory import MemoryRegion, as_region
from .operands import record
from .operators import (abs, abs_max, abs_min, add, arctan, bitwise_and, bitwise_or, bitwise_xor,  # noqa: F401,A004
                  copy, cos, divide, equal, erf, exp, gelu, gelu_apprx_sigmoid, gelu_apprx_sigmoid_dx,
                  gelu_apprx_tanh, greater, greater_equal,
                  invert, left_shift, less, less_equal, log, logical_and, logical_not, logical_or,
                  logical_xor, maximum, minimum, multiply, negative, not_equal, power, reciprocal,
                  relu, right_shift, rsqrt, sigmoid, sign, silu, silu_dx, sin, softplus, sqrt, square,
                  subtract, tanh)
from .tensor import DynSlice, NkiTensor, new_tensor

sbuf = MemoryRegion.sbuf
psum = MemoryRegion.psum
private_hbm = MemoryRegion.private_hbm
hbm = MemoryRegion.private_hbm
shared_hbm = MemoryRegion.shared_hbm

bool = bool_  # noqa: A001 - NKI name
tensor = NkiTensor  # the tensor type, as kernels annotate arguments
dtype = np.dtype  # dtypes are numpy dtypes here


class _NKIObjectMeta(type):
    """Constructs `@dataclass` subclasses as NKI does, leniently (`NKIObject.__init__(**kwargs)`
    in the NKI stub): a keyword naming no dataclass field becomes an attribute (nki-library's
    attention_cte builds `SectionParams(section_idx=...)`, whose attributes carry no annotations
    and so are no dataclass fields), and a field without a default that the caller leaves out
    is None (its moe_tkg never passes MLPTKGConstantsDimensionSizes.remainderIFused). Plain
    Python dataclasses would raise TypeError on both."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if not dataclasses.is_dataclass(cls):
            return super().__call__(*args, **kwargs)
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # the class's own __init__
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return super().__call__(*args, **kwargs)
        names = {p.name for p in params}
        extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in names}
        given = {p.name for p in params[:len(args)]} | set(kwargs)
        for p in params:
            if p.name not in given and p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD:
                kwargs[p.name] = None
        obj = super().__call__(*args, **kwargs)
        for k, v in extra.items():
            setattr(obj, k, v)
        return obj


class NKIObject(metaclass=_NKIObjectMeta):
    """Base class for kernel-side dataclasses (LIB style: `@dataclass class X(nl.NKIObject)`)."""

    def __init__(self, **kwargs: Any) -> None:
        for k, v in kwargs.items():
            setattr(self, k, v)


class _TileSize:
    """`nl.tile_size`: trn2 hardware tile limits."""

    pmax = rules.PMAX
    psum_fmax = 512
    psum_bank_fmax = 512
    psum_bank_fmax_bytes = rules.PSUM_BANK_BYTES
    psum_num_banks = rules.PSUM_NUM_BANKS
    gemm_stationary_fmax = rules.GEMM_STATIONARY_FMAX
    gemm_moving_fmax = rules.GEMM_MOVING_FMAX
    psum_min_align = 4
    bn_stats_fmax = 512
    sbuf_min_align = 4

    @property
    def sbuf_fmax_bytes(self) -> int:
        return context.current().memory.sbuf_budget

    @property
    def total_available_sbuf_size(self) -> int:
        return context.current().memory.sbuf_budget

    @property
    def sbuf_fmax(self) -> int:
        return context.current().memory.sbuf_budget // 4

    @property
    def sbuf_size_bytes(self) -> int:
        return context.current().memory.sbuf_budget * rules.PMAX


tile_size = _TileSize()


def is_hbm(buffer: Any) -> bool:
    return as_region(buffer).is_hbm


def is_on_chip(buffer: Any) -> bool:
    return as_region(buffer).on_chip


def is_psum(buffer: Any) -> bool:
    return as_region(buffer) is MemoryRegion.psum


def is_sbuf(buffer: Any) -> bool:
    return as_region(buffer) is MemoryRegion.sbuf


# ---- allocation ------------------------------------------------------------------------------
def _allocate(shape: Sequence[int], dtype: Any, buffer: Any, name: str, address: Any,
              fill: Any = None) -> NkiTensor:
    region = as_region(buffer)
    ctx = context.current()
    shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    if region is MemoryRegion.shared_hbm:
        key = ctx.shared_key(name)
        with ctx.launch.lock:  # the programs of an LNC launch run concurrently
            existing = ctx.launch.shared.get(key)
            if existing is None:
                alloc = ctx.memory.allocate(shape, dtype, region, name, address, fill)
                ctx.launch.shared[key] = alloc
                return new_tensor(alloc)
        if existing.data.shape != shape or existing.data.dtype != dt.as_dtype(dtype):
            rules.fail("lnc-outputs", f"shared_hbm tensor {key} is {existing.data.shape} "
                       f"{existing.data.dtype} in one program but {shape} {dt.as_dtype(dtype)} "
                       "in another")
        return new_tensor(existing)
    return new_tensor(ctx.memory.allocate(shape, dtype, region, name, address, fill))


def ndarray(shape: Sequence[int], dtype: Any, buffer: Any = sbuf, name: str = "",
            address: Any = None) -> NkiTensor:
    """New uninitialised tensor (floats NaN, ints a sentinel) on `buffer`."""
    return _allocate(shape, dtype, buffer, name, address)


def full(shape: Sequence[int], fill_value: Any, dtype: Any, buffer: Any = sbuf, name: str = "") -> NkiTensor:
    """New tensor filled with `fill_value` (on-chip: recorded as a VectorE memset)."""
    t = _allocate(shape, dtype, buffer, name, None, fill=fill_value)
    if t.buffer.on_chip:
        t._write(np.asarray(t._view), "nl.full")  # marks it used and (PSUM) non-matmul written
        record("Vector", "memset", t, [])
    return t


def zeros(shape: Sequence[int], dtype: Any, buffer: Any = sbuf, name: str = "") -> NkiTensor:
    return full(shape, 0, dtype, buffer, name)


def ones(shape: Sequence[int], dtype: Any, buffer: Any = sbuf, name: str = "") -> NkiTensor:
    return full(shape, 1, dtype, buffer, name)


def zeros_like(x: NkiTensor, dtype: Any = None, buffer: Any = None, name: str = "") -> NkiTensor:
    return zeros(x.shape, dtype if dtype is not None else x.dtype,
                 buffer if buffer is not None else x.buffer, name)


def empty_like(x: NkiTensor, dtype: Any = None, buffer: Any = None, name: str = "") -> NkiTensor:
    return ndarray(x.shape, dtype if dtype is not None else x.dtype,
                   buffer if buffer is not None else x.buffer, name)


def shared_constant(constant: Any) -> NkiTensor:
    """Constant data in shared HBM (not counted as an instruction: loaded with the model)."""
    arr = np.load(constant) if isinstance(constant, str) else np.asarray(constant)
    return _allocate(arr.shape, arr.dtype, shared_hbm, "", None, fill=arr)


def shared_identity_matrix(n: int, dtype: Any = uint8, dst: Optional[NkiTensor] = None) -> NkiTensor:
    """n x n identity in SBUF (recorded as one constant DMA load)."""
    out = dst if dst is not None else ndarray((n, n), dtype, sbuf, name=f"identity{n}")
    out._write(np.eye(n, dtype=np.float32), "shared_identity_matrix")
    record("DMA", "shared_identity_matrix", out, [], free_elems=n,
           nbytes=n * n * out.dtype.itemsize, descriptors=n)
    return out


# ---- indexing and loops ----------------------------------------------------------------------
def ds(start: int, size: int) -> DynSlice:
    """The slice start:start+size."""
    return DynSlice(start, size)


def affine_range(start: int, stop: Optional[int] = None, step: int = 1) -> range:
    return range(start) if stop is None else range(start, stop, step)


sequential_range = affine_range
static_range = affine_range
dynamic_range = affine_range  # data-dependent trip counts are plain ints once the kernel runs eagerly


def fori_loop(lower: int, upper: int, body_fun: Callable[[int], Any], step: int = 1) -> None:
    """Runs body_fun(i) for i in range(lower, upper, step) (static bounds only)."""
    for i in range(int(lower), int(upper), int(step)):
        body_fun(i)


@contextlib.contextmanager
def no_reorder() -> Iterator[None]:
    """Program order is already kept by the eager emulator."""
    yield


# ---- SPMD ------------------------------------------------------------------------------------
def program_id(axis: int = 0) -> int:
    launch = context.current().launch
    if axis != 0 and axis >= max(launch.grid_ndim, 1):
        rules.fail("spmd", f"program_id(axis={axis}) on a grid with {launch.grid_ndim} dims")
    return context.current().program_id if axis == 0 else 0


def num_programs(axes: int = 0) -> int:
    return context.current().launch.num_programs


def program_ndim() -> int:
    return context.current().launch.grid_ndim

