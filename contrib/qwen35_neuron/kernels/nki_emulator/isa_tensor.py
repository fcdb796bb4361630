"""TensorE instructions: `nc_matmul` and `nc_transpose`.

TensorE reads SBUF and writes PSUM. Products and accumulation are fp32. PSUM keeps a
per-element write state so the `accumulate` rules can be checked: `None` overwrites
elements no matmul has written yet and adds to the others; accumulating onto PSUM last
written by a non-matmul instruction (memset, tensor_copy, ...) is undefined on trn2.
"""
from __future__ import annotations

from enum import Enum
from typing import Any, Optional, Tuple

import numpy as np

from . import context
from . import dtypes as dt
from . import rules
from .memory import NEVER_WRITTEN, WRITTEN_BY_MATMUL, WRITTEN_BY_OTHER
from .operands import check_compute, engine, read2d, record, require_tile, resolve_engine
from .tensor import NkiTensor


class matmul_perf_mode(Enum):  # noqa: N801 - NKI spelling
    none = "none"
    double_row = "double_row"


# Row / column tile sizes the NKI docs list (nki.isa.nc_matmul, "Tiling mode": 2x 64 or, from
# NeuronCore-v3, 4x 32); smaller sizes are accepted as occupying a 32 tile, with a warning.
TILE_SIZES = (32, 64, 128)


def _tiling_limits(tile_position: Any, tile_size: Any, instr: str) -> tuple:
    """(row_max, col_max) of the PE array region the matmul may use.

    The docs list tile sizes 32, 64 and 128 only. AWS's own gdn_cte (e9ef98fc, written for the
    2.33 compiler) passes tile_size=(16, 16) for its 16-row sub-block operators in its fast test,
    so a size below 32 is accepted as a 32-PE tile (start a multiple of 32) and noted in
    KernelRun.warnings as outside the documented set, rather than refused."""
    if not tile_position and not tile_size:
        return rules.PMAX, rules.GEMM_STATIONARY_FMAX
    if not tile_position or not tile_size:
        rules.fail("matmul-tiling", "nc_matmul: tile_position and tile_size must both be set")
    (r0, c0), (rs, cs) = (int(v) for v in tile_position), (int(v) for v in tile_size)
    for what, start, size in (("row", r0, rs), ("column", c0, cs)):
        if size not in TILE_SIZES:
            if size not in (1, 2, 4, 8, 16):
                rules.fail("matmul-tiling", f"nc_matmul: {what} tile size {size} not in {TILE_SIZES}")
            context.current().warn(f"{instr}: {what} tile size {size} is not one of the documented "
                                   f"{TILE_SIZES}; treated as a 32-PE tile")
        tile = max(size, 32)
        if start % tile or start + tile > rules.PMAX:
            rules.fail("matmul-tiling", f"nc_matmul: {what} start {start} must be a multiple of "
                       f"{tile} and start+{tile} <= {rules.PMAX}")
    return rs, cs


DOUBLE_ROW_DTYPES = ("float8_e4m3", "float8_e5m2")  # trn2 (float8_e4m3fn from NeuronCore-v4)


def _check_double_row(instr: str, stationary: NkiTensor, moving: NkiTensor, tile_size: Any) -> None:
    """perf_mode=double_row (NKI docs): FP8 inputs laid out [K, 2, M] and [K, 2, N], the
    contraction split over the partition dim and the first free dim (which must be 2). Not with
    column tiling."""
    for nm, t in (("stationary", stationary), ("moving", moving)):
        if dt.short_name(t.dtype) not in DOUBLE_ROW_DTYPES:
            rules.fail("matmul-dtype", f"{instr}(perf_mode=double_row): {nm} dtype {dt.short_name(t.dtype)} "
                       f"must be one of {DOUBLE_ROW_DTYPES}")
        if t.ndim < 3 or t.shape[1] != 2:
            rules.fail("matmul-double-row", f"{instr}(perf_mode=double_row): {nm} {t.shape} must be "
                       "[K, 2, ...]: the first free dim holds the second half of the contraction")
    if tile_size and int(tuple(tile_size)[1]) != rules.PMAX:
        rules.fail("matmul-double-row", f"{instr}: perf_mode=double_row cannot be combined with column tiling")


def _double_row_operands(instr: str, stationary: NkiTensor, moving: NkiTensor) -> Tuple[np.ndarray, np.ndarray]:
    """The [2K, M] and [2K, N] operands of a double_row matmul."""
    s = np.asarray(stationary._read(instr), dtype=np.float32)
    mv = np.asarray(moving._read(instr), dtype=np.float32)
    return s.reshape(-1, int(np.prod(s.shape[2:]))), mv.reshape(-1, int(np.prod(mv.shape[2:])))


def nc_matmul(dst: NkiTensor, stationary: NkiTensor, moving: NkiTensor,
              is_stationary_onezero: bool = False, is_moving_onezero: bool = False,
              is_transpose: bool = False, accumulate: Optional[bool] = None,
              tile_position: Any = (), tile_size: Any = (),
              perf_mode: Any = matmul_perf_mode.none, name: Optional[str] = None) -> None:
    """dst[M, N] (+)= stationary[K, M].T @ moving[K, N] on TensorE, fp32 accumulation."""
    instr = "nc_matmul"
    for n, t in (("dst", dst), ("stationary", stationary), ("moving", moving)):
        require_tile(instr, n, t)
    check_compute(instr, dst=dst, stationary=stationary, moving=moving)
    rules.check_buffer(stationary, ["sbuf"], instr, "stationary")
    rules.check_buffer(moving, ["sbuf"], instr, "moving")
    rules.check_buffer(dst, ["psum"], instr, "dst")
    double_row = perf_mode == matmul_perf_mode.double_row
    if perf_mode not in (None, matmul_perf_mode.none, matmul_perf_mode.double_row):
        rules.fail("operand-type", f"nc_matmul: perf_mode must be a nisa.matmul_perf_mode value, got {perf_mode!r}")
    if double_row:
        _check_double_row(instr, stationary, moving, tile_size)
    k, m = stationary.partitions, stationary.free_size // (2 if double_row else 1)
    k2, n = moving.partitions, moving.free_size // (2 if double_row else 1)
    row_max, col_max = _tiling_limits(tile_position, tile_size, instr)
    rules.check_matmul_dims(k, k2, m, n, row_max, col_max)
    if dst.partitions != m or dst.free_size != n:
        rules.fail("matmul-dst-shape", f"nc_matmul: dst {dst.shape} must be [M={m}, N={n}] "
                   f"(stationary {stationary.shape}, moving {moving.shape})")
    fp32_s, fp32_m = dt.is_fp32_class(stationary.dtype), dt.is_fp32_class(moving.dtype)
    if fp32_s != fp32_m:
        rules.fail("matmul-dtype", f"nc_matmul: stationary {dt.short_name(stationary.dtype)} with "
                   f"moving {dt.short_name(moving.dtype)}; fp32/tf32 must pair with fp32/tf32")
    for nm, t in (("stationary", stationary), ("moving", moving)):
        if not dt.is_float(t.dtype):
            rules.fail("matmul-dtype", f"nc_matmul: {nm} dtype {dt.short_name(t.dtype)} is not a "
                       "TensorE input type (fp8/bf16/fp16/tf32/fp32)")
    if is_transpose:
        if dst.dtype != stationary.dtype:
            rules.fail("matmul-dtype", "nc_matmul(is_transpose=True): dst dtype must equal the "
                       "stationary dtype")
    elif dst.dtype != dt.float32:
        rules.fail("matmul-dtype", f"nc_matmul: dst dtype {dt.short_name(dst.dtype)} must be "
                   "float32 (PSUM output of TensorE on trn2)")
    if is_transpose:
        prod = _transpose_select(stationary, moving, instr)
    elif double_row:
        s2, mv2 = _double_row_operands(instr, stationary, moving)
        with np.errstate(all="ignore"):
            prod = s2.T @ mv2
    else:
        s = read2d(stationary, instr)
        mv = read2d(moving, instr)
        with np.errstate(all="ignore"):
            prod = s.T.astype(np.float32) @ mv.astype(np.float32)
    _write_psum(dst, prod, False if is_transpose else accumulate, instr)
    record("Tensor", "nc_matmul", dst, [stationary, moving], free_elems=n,
           fp32_matmul=fp32_s, onezero=bool(fp32_s and (is_stationary_onezero or is_moving_onezero)),
           flops=2 * k * m * n * (2 if double_row else 1), perf_factor=2 if double_row else 1)


def _transpose_select(stationary: NkiTensor, moving: NkiTensor, instr: str) -> np.ndarray:
    """is_transpose=True: dst = stationary.T through the identity `moving`, bit-exact on trn2
    (NaN/Inf included): each dst column n copies the stationary row k where moving[k, n] == 1."""
    s = np.asarray(stationary._read(instr)).reshape(stationary.partitions, -1)
    mv = np.asarray(moving._read(instr), dtype=np.float32).reshape(moving.partitions, -1)
    ones = mv == 1.0
    if not (((mv == 0.0) | ones).all() and (ones.sum(axis=0) <= 1).all()):
        rules.fail("matmul-transpose", f"{instr}(is_transpose=True): moving must be an identity "
                   "(one 1 per column, zeros elsewhere); the transpose is bit-exact only as a selection")
    out = np.zeros((s.shape[1], mv.shape[1]), dtype=s.dtype)
    k_of_n = ones.argmax(axis=0)
    hit = ones.any(axis=0)
    out[:, hit] = s[k_of_n[hit], :].T
    return out


def _write_psum(dst: NkiTensor, prod: np.ndarray, accumulate: Optional[bool], instr: str) -> None:
    """Overwrite or accumulate into PSUM, following the trn2 accumulate rules."""
    dst._alloc.touch(instr)
    state = dst._state
    shape2 = (dst.partitions, dst.free_size)
    if accumulate is False or state is None:
        dst._write(prod, instr, writer=WRITTEN_BY_MATMUL)
        return
    st = np.asarray(state).reshape(shape2)
    if accumulate is True and np.any(st == WRITTEN_BY_OTHER):
        # NKI docs: undefined behaviour on trn2. Devices have been seen to add onto the value
        # the memset/copy left, which is what we do, with a warning in KernelRun.warnings.
        context.current().warn(f"{instr}: accumulating onto PSUM set by a non-matmul instruction "
                               "(memset/tensor_copy) is undefined behaviour on trn2 per the NKI docs; "
                               "emulated as adding onto that value")
        st = np.where(st == WRITTEN_BY_OTHER, WRITTEN_BY_MATMUL, st)
    if accumulate is True and np.any(st == NEVER_WRITTEN):
        rules.fail("matmul-accumulate", f"{instr}: accumulate=True into PSUM that no matmul has "
                   "written is undefined; the first matmul must overwrite (accumulate=False)")
    old = np.asarray(dst._view, dtype=np.float32).reshape(shape2)
    with np.errstate(all="ignore"):
        new = np.where(st == WRITTEN_BY_MATMUL, old + prod, prod)
    dst._write(new, instr, writer=WRITTEN_BY_MATMUL)


def nc_transpose(dst: NkiTensor, data: NkiTensor, engine: Any = engine.unknown,
                 name: Optional[str] = None) -> None:
    """Swap the partition dim with the (flattened) free dims, on TensorE or VectorE."""
    instr = "nc_transpose"
    require_tile(instr, "dst", dst)
    require_tile(instr, "data", data)
    check_compute(instr, dst=dst, data=data)
    default = ("Tensor" if data.buffer.value == "sbuf" and dst.buffer.value == "psum" else "Vector")
    eng = resolve_engine(instr, engine, default, ("Tensor", "Vector"))
    p, f = data.partitions, data.free_size
    rules.check_transpose_size(eng, p, f)
    if eng == "Tensor":
        rules.check_buffer(data, ["sbuf"], instr, "data (TensorE)")
        rules.check_buffer(dst, ["psum"], instr, "dst (TensorE)")
    rules.check_dtype_equal(instr, "dst", dt.short_name(dst.dtype), "data", dt.short_name(data.dtype))
    if dst.partitions != f or dst.free_size != p:
        rules.fail("transpose-shape", f"{instr}: dst {dst.shape} must be [{f}, {p}] for data {data.shape}")
    values = np.asarray(data._read(instr)).reshape(p, f).T.copy()  # bit-exact on trn2
    dst._write(values, instr, writer=WRITTEN_BY_MATMUL if eng == "Tensor" else WRITTEN_BY_OTHER)
    if eng == "Tensor":
        record("Tensor", "nc_transpose", dst, [data], free_elems=p,
               fp32_matmul=dt.is_fp32_class(data.dtype), flops=2 * p * f * p)
    else:
        record("Vector", "nc_transpose", dst, [data], free_elems=f)
