"""DMA instructions: `dma_copy` and `dma_transpose`.

DMA moves HBM<->SBUF, SBUF<->SBUF and HBM<->HBM. It never reads or writes PSUM (NKI >= 0.3:
evict PSUM with `tensor_copy` first). Element counts must match; the shapes may differ
(data is taken in row-major order). Different dtypes convert through fp32.
"""
from __future__ import annotations

from enum import Enum
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from . import dtypes as dt
from . import rules
from .operands import engine, record, require_tile
from .tensor import IndirectTensor, NkiTensor

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


_OOB = oob_mode


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


def _as_dge(instr: str, mode: Any) -> Any:
    """A dge_mode given as its enum or as the enum's integer (nki-library passes 3 for none)."""
    if mode is None or isinstance(mode, _DGE):
        return mode
    try:
        return _DGE(int(mode))
    except (TypeError, ValueError):
        rules.fail("operand-type", f"{instr}: dge_mode must be a nisa.dge_mode value, got {mode!r}")
        raise


def _write_in_bounds(instr: str, dst: NkiTensor, src: NkiTensor, values: np.ndarray, mode: Any) -> None:
    """dst = values, except for the rows of an indirect (vector_offset) operand whose index
    falls outside its tensor: an error with oob_mode.error, left untouched with oob_mode.skip."""
    masks = [(t, t.row_valid) for t in (src, dst) if isinstance(t, IndirectTensor)]
    bad = [(t, m) for t, m in masks if not m.all()]
    if not bad:
        dst._write(values, instr)
        return
    if mode != _OOB.skip:
        t, m = bad[0]
        which = "src" if t is src else "dst"
        rules.fail("index", f"{instr}: {int((~m).sum())} of the {m.size} vector_offset indices of {which} fall "
                   "outside the tensor (pass oob_mode=nisa.oob_mode.skip to skip them)")
    keep = np.ones(values.size, dtype=bool)
    for t, m in bad:
        keep &= np.repeat(m, t.size // m.size)
    current = np.array(dst._read(instr)).reshape(-1)
    current[keep] = np.asarray(values).reshape(-1)[keep]
    dst._write(current, instr)


def dma_copy(dst: NkiTensor, src: NkiTensor, priority: Any = None, oob_mode: Any = oob_mode.error,
             dge_mode: Any = dge_mode.unknown, engine: Any = engine.unknown,
             name: Optional[str] = None) -> None:
    """dst = src through a DMA queue (cast through fp32 when dtypes differ)."""
    instr = "dma_copy"
    _check_dma_operands(instr, dst, src)
    rules.check_element_count(instr, dst.size, src.size)
    dge_mode = _as_dge(instr, dge_mode)
    if dge_mode == _DGE.hwdge and dst.dtype != src.dtype:
        rules.fail("dtype", f"{instr}: hwdge DMA needs equal dtypes, got {dt.short_name(src.dtype)} "
                   f"-> {dt.short_name(dst.dtype)}")
    values = _convert(src._read(instr), src.dtype, dst.dtype)
    _write_in_bounds(instr, dst, src, values, oob_mode)
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
    dge_mode = _as_dge(instr, dge_mode)
    # The docs call unknown and hwdge the only valid modes of a plain transpose; nki-library's
    # own moe_tkg (mlp_tkg_gate_up_projection) passes none (3, static DMA) there, so none is
    # accepted too. swdge means the indirect gather-transpose, which is not emulated.
    if dge_mode not in (None, _DGE.unknown, _DGE.hwdge, _DGE.none):
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


DMA_COMPUTE_MAX_SOURCES = 16


def dma_compute(dst: NkiTensor, srcs: Sequence[NkiTensor], reduce_op: Any, scales: Any = None,
                unique_indices: bool = True, oob_mode: Any = oob_mode.error, name: Optional[str] = None) -> None:
    """dst = srcs[0] + srcs[1] + ... computed in fp32 by the DMA engines (NKI docs: reduce_op
    nl.add only, every scale 1.0). With an indirect (vector_offset) dst or src this is the
    documented scatter / gather read-modify-write."""
    instr = "dma_compute"
    srcs = list(srcs)
    if not 1 <= len(srcs) <= DMA_COMPUTE_MAX_SOURCES:
        rules.fail("operand-type", f"{instr}: {len(srcs)} sources; 1 to {DMA_COMPUTE_MAX_SOURCES} allowed")
    if getattr(reduce_op, "name", None) != "add":
        rules.fail("operator", f"{instr}: reduce_op must be nl.add, got {reduce_op!r}")
    if scales is not None and any(float(v) != 1.0 for v in scales):
        rules.fail("operand-type", f"{instr}: every scale must be 1.0, got {list(scales)}")
    if not unique_indices:
        rules.fail("not-emulated", f"{instr}: unique_indices=False (not supported by NKI either)")
    for i, src in enumerate(srcs):
        _check_dma_operands(instr, dst, src)
        rules.check_element_count(f"{instr} srcs[{i}]", dst.size, src.size)
    total = np.zeros(dst.size, dtype=np.float32)
    with np.errstate(all="ignore"):
        for src in srcs:
            total += np.asarray(src._read(instr), dtype=np.float32).reshape(-1)
    values = dt.round_to(total, dst.dtype).reshape(dst.shape)
    indirect = [s for s in srcs if isinstance(s, IndirectTensor)]
    _write_in_bounds(instr, dst, indirect[0] if indirect else srcs[0], values, oob_mode)
    nbytes = sum(s.size * s.dtype.itemsize for s in srcs) + dst.size * dst.dtype.itemsize
    hbm = sum(t.size * t.dtype.itemsize for t in [dst, *srcs] if t.buffer.is_hbm)
    record("DMA", "dma_compute", dst, srcs, free_elems=dst.size, nbytes=nbytes,
           descriptors=max(contiguous_runs(t._view)[0] for t in [dst, *srcs]), hbm_bytes=hbm)
