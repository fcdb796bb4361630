"""DMA instructions: `dma_copy` and `dma_transpose`.

DMA moves HBM<->SBUF, SBUF<->SBUF and HBM<->HBM. It never reads or writes PSUM (NKI >= 0.3:
evict PSUM with `tensor_copy` first). Element counts must match; the shapes may differ
(data is taken in row-major order). Different dtypes convert through fp32.
"""
from __future__ import annotations

from enum import Enum
from typing import Any, Optional, Tuple

import numpy as np

from . import dtypes as dt
from . import rules
from .operands import engine, record, require_tile
from .tensor import NkiTensor

# Throughput of dma_transpose relative to a copy (nki-facts section 3, trainium2_arch.rst).
DMA_TRANSPOSE_EFFICIENCY = {"hbm": 0.9, "sbuf": 0.5}


class dge_mode(Enum):  # noqa: N801 - NKI spelling
    unknown = 0
    swdge = 1
    hwdge = 2
    none = 3


_DGE = dge_mode


class oob_mode(Enum):  # noqa: N801 - NKI spelling
    error = 0
    skip = 1


def contiguous_runs(view: np.ndarray) -> Tuple[int, int]:
    """(number of contiguous byte runs, bytes per run) of a strided view: DMA descriptors."""
    run = view.itemsize
    dims = list(zip(view.shape, view.strides))
    i = len(dims) - 1
    while i >= 0 and (dims[i][0] == 1 or dims[i][1] == run):
        run *= dims[i][0]
        i -= 1
    count = int(np.prod([s for s, _ in dims[:i + 1]])) if i >= 0 else 1
    return count, run


def _check_dma_operands(instr: str, dst: NkiTensor, src: NkiTensor) -> None:
    require_tile(instr, "dst", dst)
    require_tile(instr, "src", src)
    rules.check_buffer(src, ["sbuf", "private_hbm", "shared_hbm"], instr, "src (DMA cannot read PSUM)")
    rules.check_buffer(dst, ["sbuf", "private_hbm", "shared_hbm"], instr, "dst (DMA cannot write PSUM)")
    for name, t in (("dst", dst), ("src", src)):
        if t.buffer.on_chip:
            rules.check_partition_dim(t.partitions, f"{instr}: {name}")


def _hbm_bytes(dst: NkiTensor, src: NkiTensor) -> int:
    """HBM traffic of one DMA: bytes read from HBM plus bytes written to HBM."""
    total = 0
    for t in (src, dst):
        if t.buffer.is_hbm:
            total += t.size * t.dtype.itemsize
    return total


def _convert(values: np.ndarray, src_dtype: np.dtype, dst_dtype: np.dtype) -> np.ndarray:
    if src_dtype == dst_dtype:
        return np.array(values)
    return dt.round_to(np.asarray(values).astype(np.float32), dst_dtype)


def dma_copy(dst: NkiTensor, src: NkiTensor, priority: Any = None, oob_mode: Any = oob_mode.error,
             dge_mode: Any = dge_mode.unknown, engine: Any = engine.unknown,
             name: Optional[str] = None) -> None:
    """dst = src through a DMA queue (cast through fp32 when dtypes differ)."""
    instr = "dma_copy"
    _check_dma_operands(instr, dst, src)
    rules.check_element_count(instr, dst.size, src.size)
    if dge_mode == _DGE.hwdge and dst.dtype != src.dtype:
        rules.fail("dtype", f"{instr}: hwdge DMA needs equal dtypes, got {dt.short_name(src.dtype)} "
                   f"-> {dt.short_name(dst.dtype)}")
    values = _convert(src._read(instr), src.dtype, dst.dtype)
    dst._write(values, instr)
    nbytes = max(src.size * src.dtype.itemsize, dst.size * dst.dtype.itemsize)
    desc = max(contiguous_runs(src._view)[0], contiguous_runs(dst._view)[0])
    record("DMA", "dma_copy", dst, [src], free_elems=dst.size, nbytes=nbytes, descriptors=desc,
           hbm_bytes=_hbm_bytes(dst, src))


# dma_transpose permutations by rank (NKI docs, nki.isa.dma_transpose): 2-D [1, 0], 3-D [2, 1, 0],
# 4-D [3, 1, 2, 0]; `axes` may only name the one for its rank.
TRANSPOSE_AXES = {2: (1, 0), 3: (2, 1, 0), 4: (3, 1, 2, 0)}


def dma_transpose(dst: NkiTensor, src: NkiTensor, axes: Any = None, priority: Any = None,
                  dge_mode: Any = dge_mode.unknown, oob_mode: Any = oob_mode.error,
                  name: Optional[str] = None) -> None:
    """Transpose through DMA into SBUF: dst = src permuted by its rank's fixed axes.

    With dge_mode=hwdge (hardware DGE) the docs add: src.shape[0] == 16, src.shape[-1] a
    multiple of 128, 2-byte dtype. Only unknown and hwdge are valid modes.
    """
    instr = "dma_transpose"
    _check_dma_operands(instr, dst, src)
    rules.check_buffer(dst, ["sbuf"], instr, "dst")
    perm = TRANSPOSE_AXES.get(src.ndim)
    if perm is None:
        rules.fail("dma-transpose", f"{instr}: src must be 2-D, 3-D or 4-D, got {src.shape}")
    if axes is not None and tuple(axes) != perm:
        rules.fail("dma-transpose", f"{instr}: axes {tuple(axes)} invalid for a {src.ndim}-D input; "
                   f"the only supported permutation is {perm}")
    want = tuple(src.shape[a] for a in perm)
    if dst.size != src.size or (dst.shape != want and dst.ndim == src.ndim):
        rules.fail("dma-transpose", f"{instr}: dst shape {dst.shape} must equal the transposed "
                   f"src shape {want} (NKI >= 0.4)")
    rules.check_dtype_equal(instr, "src", dt.short_name(src.dtype), "dst", dt.short_name(dst.dtype))
    if dge_mode not in (None, _DGE.unknown, _DGE.hwdge):
        rules.fail("dma-transpose", f"{instr}: dge_mode {dge_mode.name} invalid; use unknown or hwdge")
    if dge_mode == _DGE.hwdge:
        if src.dtype.itemsize != 2 or src.shape[0] != 16 or src.shape[-1] % 128:
            rules.fail("dma-transpose", f"{instr}: hwdge transpose needs a 2-byte dtype, "
                       f"src.shape[0] == 16 and src.shape[-1] a multiple of 128; got {src.shape} "
                       f"{dt.short_name(src.dtype)}")
    dst._write(np.transpose(np.asarray(src._read(instr)), perm).reshape(dst.shape).copy(), instr)
    eff = DMA_TRANSPOSE_EFFICIENCY["sbuf" if src.buffer.on_chip else "hbm"]
    record("DMA", "dma_transpose", dst, [src], free_elems=dst.size,
           nbytes=src.size * src.dtype.itemsize, descriptors=dst.shape[0], dma_efficiency=eff,
           hbm_bytes=_hbm_bytes(dst, src))
