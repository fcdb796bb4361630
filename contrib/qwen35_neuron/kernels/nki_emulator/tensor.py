"""The emulated `NkiTensor`: a numpy view onto an `Allocation`, plus NKI view rules.

All view methods return new tensors sharing storage (no copies), as in NKI. On SBUF/PSUM,
dim 0 is the partition dim: integer indexing keeps it as size 1, it cannot be strided,
permuted away or reshaped, and results stay at least 2-D. On HBM an integer index drops
the dim. Out-of-range slices are errors (numpy would silently clip them).
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import dtypes as dt
from . import rules
from .memory import WRITTEN_BY_OTHER, Allocation, MemoryRegion


class DynSlice:
    """`nl.ds(start, size)`: the slice start:start+size."""

    __slots__ = ("start", "size")

    def __init__(self, start: int, size: int) -> None:
        self.start, self.size = int(start), int(size)

    def __repr__(self) -> str:
        return f"nl.ds({self.start}, {self.size})"


def _is_int(k: Any) -> bool:
    return isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_))


def _resolve_slice(k: slice, size: int, dim: int) -> Tuple[int, int, int]:
    step = 1 if k.step is None else int(k.step)
    if step <= 0:
        rules.fail("index", f"slice step {step} on dim {dim} must be positive")
    start = 0 if k.start is None else int(k.start)
    stop = size if k.stop is None else int(k.stop)
    start = start + size if start < 0 else start
    stop = stop + size if stop < 0 else stop
    if not (0 <= start <= stop <= size):
        rules.fail("index", f"slice {start}:{stop} on dim {dim} is out of bounds for size {size}")
    return start, stop, step  # an empty view may be built (cross_entropy slices 0 positions on an
    # idle core); an instruction given one fails (operands.require_tile)


class NkiTensor:
    """A tensor (or view) on SBUF, PSUM or HBM."""

    __slots__ = ("_alloc", "_view", "_state", "__weakref__")

    def __init__(self, alloc: Allocation, view: np.ndarray, state: Optional[np.ndarray]) -> None:
        self._alloc, self._view, self._state = alloc, view, state

    @classmethod
    def _of(cls, alloc: Allocation) -> "NkiTensor":
        return cls(alloc, alloc.data, alloc.state)

    # ---- attributes -----------------------------------------------------------------------
    @property
    def shape(self) -> Tuple[int, ...]:
        return self._view.shape  # numpy shapes are tuples of Python ints

    @property
    def dtype(self) -> np.dtype:
        return self._view.dtype

    @property
    def buffer(self) -> MemoryRegion:
        return self._alloc.region

    @property
    def ndim(self) -> int:
        return self._view.ndim

    @property
    def name(self) -> str:
        return self._alloc.name

    @property
    def size(self) -> int:
        return int(self._view.size)

    @property
    def partitions(self) -> int:
        """Partition count (dim 0) as the engines see it."""
        shape = self._view.shape
        return shape[0] if shape else 1

    @property
    def free_size(self) -> int:
        """Elements per partition."""
        return self.size // self.partitions

    def start_partition(self) -> int:
        """First physical partition of an on-chip view (its offset over the row stride)."""
        base = self._alloc.data
        offset = self._view.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        return int(offset // base.strides[0]) if base.strides[0] else 0

    def span(self) -> Tuple[int, int, int]:
        """(allocation id, first byte, one past last byte) covered by this view."""
        lo, hi = np.lib.array_utils.byte_bounds(self._view)
        base = self._alloc.data.__array_interface__["data"][0]
        return (self._alloc.id, int(lo - base), int(hi - base))

    def numpy(self) -> np.ndarray:
        """Emulator-only: a copy of the current contents."""
        return np.array(self._view)

    def __repr__(self) -> str:
        return (f"NkiTensor(shape={self.shape}, dtype={dt.short_name(self.dtype)}, "
                f"buffer={self.buffer.value}, name={self.name!r})")

    def __iter__(self) -> Any:
        raise TypeError("NkiTensor is not iterable; index it explicitly")

    def __len__(self) -> int:
        return self.shape[0]

    # ---- instruction access -----------------------------------------------------------------
    def _read(self, where: str) -> np.ndarray:
        self._alloc.touch(where)
        return self._view

    def _write(self, values: Any, where: str, writer: int = WRITTEN_BY_OTHER) -> None:
        """Round to this tensor's dtype and store (values have this tensor's element count)."""
        self._alloc.touch(where)
        if not self._view.flags.writeable:
            rules.fail("destination", f"{where}: destination is read-only (a broadcast view "
                       "or a read-only host array)")
        vals = np.asarray(values)
        if vals.dtype == self.dtype:
            self._view[...] = vals.reshape(self.shape)
        else:
            self._view[...] = dt.round_to(vals, self.dtype).reshape(self.shape)
        if self._state is not None:
            self._state[...] = writer

    def _derive(self, fn: Any) -> "NkiTensor":
        state = None if self._state is None else fn(self._state)
        return NkiTensor(self._alloc, fn(self._view), state)

    # ---- indexing ---------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> "NkiTensor":
        key = key if isinstance(key, tuple) else (key,)
        ellipses = [j for j, k in enumerate(key) if k is Ellipsis]
        if len(ellipses) > 1:
            rules.fail("index", "at most one Ellipsis in an index")
        if ellipses:
            i = ellipses[0]
            key = key[:i] + (slice(None),) * (self.ndim - (len(key) - 1)) + key[i + 1:]
        if len(key) > self.ndim:
            rules.fail("index", f"{len(key)} indices for a {self.ndim}-D tensor of shape {self.shape}")
        on_chip = self.buffer.on_chip
        np_key: List[Any] = []
        for d, k in enumerate(key):
            size = self.shape[d]
            if isinstance(k, DynSlice):
                k = slice(k.start, k.start + k.size) if k.size > 0 else slice(k.start, k.start)
                if k.start < 0:
                    rules.fail("index", f"nl.ds start {k.start} on dim {d} is negative")
            if isinstance(k, slice):
                start, stop, step = _resolve_slice(k, size, d)
                if d == 0 and on_chip and step != 1:
                    rules.fail("partition-stride", f"partition dim slice step {step}: the "
                               "partition dim of SBUF/PSUM is contiguous (step must be 1)")
                np_key.append(slice(start, stop, step))
            elif _is_int(k):
                i = int(k) + size if int(k) < 0 else int(k)
                if not 0 <= i < size:
                    rules.fail("index", f"index {int(k)} out of bounds for dim {d} of size {size}")
                np_key.append(slice(i, i + 1) if (d == 0 and on_chip) else i)
            else:
                rules.fail("index", f"unsupported index {k!r} (ints, slices, nl.ds, ... only)")
        out = self._derive(lambda a: a[tuple(np_key)])
        if on_chip and out.ndim < 2:
            out = out._derive(lambda a: a.reshape(a.shape[0], 1))
        return out

    def __setitem__(self, key: Any, value: Any) -> None:
        """`t[idx] = tile_or_number` copies (DMA if HBM is involved, else tensor_copy)."""
        from . import isa_dma, isa_vector  # late: the ISA layer imports this module
        dst = self[key]
        if isinstance(value, NkiTensor):
            if dst.buffer.is_hbm or value.buffer.is_hbm:
                isa_dma.dma_copy(dst, value)
            else:
                isa_vector.tensor_copy(dst, value)
        else:
            isa_vector.memset(dst, value)

    # ---- views ------------------------------------------------------------------------------
    def _check_not_partition(self, dim: int, what: str) -> None:
        if self.buffer.on_chip and dim == 0:
            rules.fail("partition-view", f"{what} cannot change dim 0 (the partition dim) of an "
                       "SBUF/PSUM tensor")

    def reshape(self, *shape: Any) -> "NkiTensor":
        shape_t = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        shape_t = tuple(int(s) for s in shape_t)
        try:
            probe = np.reshape(self._view, shape_t, copy=False)
        except ValueError as exc:
            rules.fail("reshape", f"cannot view shape {self.shape} as {shape_t} without a copy: {exc}")
        if self.buffer.on_chip and probe.shape[0] != self.shape[0]:
            rules.fail("partition-view", f"reshape {self.shape} -> {shape_t} changes the partition "
                       "dim of an SBUF/PSUM tensor")
        return self._derive(lambda a: np.reshape(a, shape_t, copy=False))

    def permute(self, dims: Sequence[int]) -> "NkiTensor":
        dims = tuple(int(d) for d in dims)
        if sorted(dims) != list(range(self.ndim)):
            rules.fail("permute", f"dims {dims} are not a permutation of {self.ndim} dims")
        if self.buffer.on_chip and dims[0] != 0:
            rules.fail("partition-view", f"permute {dims}: dims[0] must be 0 on SBUF/PSUM")
        return self._derive(lambda a: np.transpose(a, dims))

    def broadcast(self, dim: int, size: int) -> "NkiTensor":
        dim = dim % self.ndim
        if self.shape[dim] != 1:
            rules.fail("broadcast", f"broadcast dim {dim} has size {self.shape[dim]}, must be 1")
        self._check_not_partition(dim, "broadcast")
        new = list(self.shape)
        new[dim] = int(size)
        return self._derive(lambda a: np.broadcast_to(a, tuple(new)))

    def broadcast_to(self, shape: Sequence[int]) -> "NkiTensor":
        shape_t = tuple(int(s) for s in shape)
        if self.buffer.on_chip and (len(shape_t) != self.ndim or shape_t[0] != self.shape[0]):
            rules.fail("partition-view", f"broadcast_to {shape_t} changes the partition dim of "
                       f"an SBUF/PSUM tensor of shape {self.shape}")
        try:
            return self._derive(lambda a: np.broadcast_to(a, shape_t))
        except ValueError:
            rules.fail("broadcast", f"cannot broadcast {self.shape} to {shape_t}")
            raise

    def expand_dim(self, dim: int) -> "NkiTensor":
        self._check_not_partition(dim, "expand_dim")
        return self._derive(lambda a: np.expand_dims(a, dim))

    def squeeze_dim(self, dim: int) -> "NkiTensor":
        dim = dim % self.ndim
        if self.shape[dim] != 1:
            rules.fail("squeeze", f"squeeze_dim {dim}: size is {self.shape[dim]}, must be 1")
        self._check_not_partition(dim, "squeeze_dim")
        return self._derive(lambda a: np.squeeze(a, axis=dim))

    def reshape_dim(self, dim: int, shape: Sequence[int]) -> "NkiTensor":
        dim = dim % self.ndim
        sizes = list(int(s) for s in shape)
        if -1 in sizes:
            known = int(np.prod([s for s in sizes if s != -1]))
            sizes[sizes.index(-1)] = self.shape[dim] // max(known, 1)
        new = self.shape[:dim] + tuple(sizes) + self.shape[dim + 1:]
        return self.reshape(new)

    def flatten_dims(self, start_dim: int, end_dim: int) -> "NkiTensor":
        self._check_not_partition(start_dim, "flatten_dims")
        s = self.shape
        merged = int(np.prod(s[start_dim:end_dim + 1]))
        return self.reshape(s[:start_dim] + (merged,) + s[end_dim + 1:])

    def slice(self, dim: int, start: int, end: int, step: int = 1) -> "NkiTensor":
        key: List[Any] = [slice(None)] * self.ndim
        key[dim] = slice(start, end, step)
        return self[tuple(key)]

    def select(self, dim: int, index: int) -> "NkiTensor":
        if not _is_int(index):
            rules.fail("index", "select with a dynamic (tensor) index is not emulated")
        self._check_not_partition(dim, "select")
        key: List[Any] = [slice(None)] * self.ndim
        key[dim] = int(index)
        return self[tuple(key)]

    def view(self, dtype: Any) -> "NkiTensor":
        """Reinterpret the bytes (last dim rescaled when the item size differs)."""
        new = dt.as_dtype(dtype)
        try:
            view = self._view.view(new)
        except ValueError as exc:
            rules.fail("view", f"cannot view {self.shape} {dt.short_name(self.dtype)} as "
                       f"{dt.short_name(new)}: {exc}")
        state = self._state if (self._state is not None and new.itemsize == self.dtype.itemsize) else None
        return NkiTensor(self._alloc, view, state)

    def ap(self, pattern: Sequence[Sequence[int]], offset: Optional[int] = None,
           scalar_offset: Any = None, vector_offset: Any = None, indirect_dim: int = 0,
           dtype: Any = None) -> "NkiTensor":
        """Access pattern `[[stride, count], ...]` in elements over this tensor's storage.

        `offset` (elements) starts it, relative to this view; `dtype` reinterprets the storage
        first (elements then count in that dtype). `scalar_offset` (a (1, 1) SBUF tensor or a
        register) moves the start by its value times the stride of dim `indirect_dim` of this
        tensor. `vector_offset` (an SBUF tensor, one index per row of the pattern's leading
        dim) makes an indirect view: row i starts at index[i] times that stride, the leading
        pattern stride being ignored (NKI docs, nki-aps.rst); DMA reads it as a gather and
        writes it as a scatter.
        """
        if scalar_offset is not None and vector_offset is not None:
            rules.fail("ap", "ap(): at most one of scalar_offset and vector_offset")
        base = self._alloc.data
        on_chip = self.buffer.on_chip
        if not on_chip and not base.flags.c_contiguous:
            rules.fail("ap", "ap() needs contiguous HBM storage")
        item0 = base.itemsize
        row_len0 = base.size // base.shape[0] if on_chip else base.size
        p0 = self.start_partition() if on_chip else 0
        byte_off = self._view.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        start0 = p0 * row_len0 + (byte_off - p0 * base.strides[0]) // item0 if on_chip else byte_off // item0
        dyn_stride = self._view.strides[indirect_dim] // item0 if self.ndim else 1
        if dtype is not None and dt.as_dtype(dtype) != base.dtype:
            base, start0, dyn_stride = _reinterpret(base, dt.as_dtype(dtype), on_chip, start0, dyn_stride)
        item = base.itemsize
        row_len = base.size // base.shape[0] if on_chip else base.size  # logical elements per partition
        start = start0 + int(offset or 0)
        if scalar_offset is not None:
            value = scalar_offset.numpy().reshape(-1)[0] if isinstance(scalar_offset, NkiTensor) else scalar_offset
            start += int(value) * dyn_stride
        strides = [int(p[0]) for p in pattern]
        counts = [int(p[1]) for p in pattern]
        if min(counts) <= 0:
            rules.fail("ap", f"access pattern {list(map(list, pattern))} has a count <= 0")
        if vector_offset is not None:
            return self._indirect(base, on_chip, row_len, start, strides, counts, vector_offset, dyn_stride)
        lo, hi = _extent(start, strides, counts)
        if (lo < 0 or hi >= base.size) and scalar_offset is not None:
            # a runtime offset out of bounds: DMA decides by oob_mode (skip or error), row by row
            index = np.arange(counts[0], dtype=np.int64) * strides[0]
            return self._rows(base, on_chip, row_len, start, strides, counts, index, 1)
        if lo < 0 or hi >= base.size:
            # Only an instruction that uses the view touches memory (a kernel may build a view it
            # then skips, as nki-library's output_projection_tkg does for its last PSUM tile).
            return OutOfBoundsView(self._alloc, tuple(counts), base.dtype,
                                   f"access pattern {list(map(list, pattern))} at offset {start} reaches "
                                   f"elements [{lo}, {hi}] outside storage of {base.size} elements")
        _check_on_chip_pattern(on_chip, strides, counts, row_len, pattern)
        state = None
        if self._alloc.state is not None and base.dtype == self._alloc.data.dtype:
            state = _strided(self._alloc.state, on_chip, row_len, start, strides, counts)
        return NkiTensor(self._alloc, _strided(base, on_chip, row_len, start, strides, counts), state)

    def _indirect(self, base: np.ndarray, on_chip: bool, row_len: int, start: int, strides: List[int],
                  counts: List[int], vector_offset: Any, row_stride: int) -> "NkiTensor":
        if not isinstance(vector_offset, NkiTensor) or vector_offset.buffer.value != "sbuf":
            rules.fail("ap", "ap(vector_offset=...) takes an SBUF tensor of indices")
        index = np.asarray(vector_offset._read("ap(vector_offset)")).reshape(-1).astype(np.int64)
        if index.size != counts[0]:
            rules.fail("ap", f"ap(vector_offset=...): {index.size} indices for a leading pattern dim "
                       f"of {counts[0]}")
        return self._rows(base, on_chip, row_len, start, strides, counts, index, row_stride)

    def _rows(self, base: np.ndarray, on_chip: bool, row_len: int, start: int, strides: List[int],
              counts: List[int], index: np.ndarray, row_stride: int) -> "NkiTensor":
        """An indirect view whose row i starts at start + index[i] * row_stride."""
        inner_s, inner_c = strides[1:] or [1], counts[1:] or [1]
        lo, hi = _extent(0, inner_s, inner_c)
        rows: List[Optional[np.ndarray]] = []
        for i in index:
            s0 = start + int(i) * row_stride
            if s0 + lo < 0 or s0 + hi >= base.size:
                rows.append(None)
                continue
            rows.append(_strided(base, on_chip, row_len, s0, inner_s, inner_c).reshape(counts[1:]))
        return IndirectTensor(self._alloc, rows, tuple(counts), base.dtype)


class IndirectTensor(NkiTensor):
    """An `ap(vector_offset=...)` view: one storage view per row, chosen by runtime indices.

    Reads gather the rows (out-of-bounds rows read as zeros), writes scatter them; `row_valid`
    tells DMA which rows are in bounds (oob_mode decides whether the others are an error or
    skipped)."""

    __slots__ = ("_rows",)

    def __init__(self, alloc: Allocation, rows: List[Optional[np.ndarray]], shape: Tuple[int, ...],
                 dtype: np.dtype) -> None:
        gathered = np.zeros(shape, dtype=dtype)
        for i, r in enumerate(rows):
            if r is not None:
                gathered[i] = r
        super().__init__(alloc, gathered, None)
        self._rows = rows

    @property
    def row_valid(self) -> np.ndarray:
        return np.array([r is not None for r in self._rows], dtype=bool)

    def _write(self, values: Any, where: str, writer: int = WRITTEN_BY_OTHER) -> None:
        self._alloc.touch(where)
        vals = np.asarray(values).reshape(self.shape)
        if vals.dtype != self.dtype:
            vals = dt.round_to(vals, self.dtype)
        for r, v in zip(self._rows, vals):
            if r is not None:
                r[...] = v
        self._view[...] = vals

    def span(self) -> Tuple[int, int, int]:
        """The whole allocation (the rows are known only at run time)."""
        return (self._alloc.id, 0, int(self._alloc.data.nbytes))

    def start_partition(self) -> int:
        return 0

    def __getitem__(self, key: Any) -> "NkiTensor":
        rules.fail("ap", "an indirect (vector_offset) view cannot be indexed further")
        raise AssertionError


class OutOfBoundsView(NkiTensor):
    """An access pattern that leaves its storage: it has a shape and dtype, and any instruction
    that reads or writes it fails with the [ap] rule."""

    __slots__ = ("_problem",)

    def __init__(self, alloc: Allocation, shape: Tuple[int, ...], dtype: np.dtype, problem: str) -> None:
        super().__init__(alloc, np.zeros(shape, dtype=dtype), None)
        self._problem = problem

    def _read(self, where: str) -> np.ndarray:
        rules.fail("ap", f"{where}: {self._problem}")
        raise AssertionError

    def _write(self, values: Any, where: str, writer: int = WRITTEN_BY_OTHER) -> None:
        rules.fail("ap", f"{where}: {self._problem}")

    def span(self) -> Tuple[int, int, int]:
        return (self._alloc.id, 0, int(self._alloc.data.nbytes))

    def start_partition(self) -> int:
        return 0


def _extent(start: int, strides: Sequence[int], counts: Sequence[int]) -> Tuple[int, int]:
    lo = start + sum(min(0, s * (c - 1)) for s, c in zip(strides, counts))
    hi = start + sum(max(0, s * (c - 1)) for s, c in zip(strides, counts))
    return lo, hi


def _check_on_chip_pattern(on_chip: bool, strides: List[int], counts: List[int], row_len: int,
                           pattern: Sequence[Sequence[int]]) -> None:
    if not on_chip:
        return
    if counts[0] > 1 and strides[0] != row_len:
        rules.fail("ap", f"first ap pair stride {strides[0]} must equal the partition row "
                   f"length {row_len} on SBUF/PSUM")
    rules.check_partition_dim(counts[0], "ap")
    if any(abs(s) >= row_len for s, c in zip(strides[1:], counts[1:]) if c > 1):
        rules.fail("ap", f"access pattern {list(map(list, pattern))}: only the first pair may "
                   "step across partitions on SBUF/PSUM")


def _strided(a: np.ndarray, on_chip: bool, row_len: int, start: int, strides: Sequence[int],
             counts: Sequence[int]) -> np.ndarray:
    """The numpy view of a pattern: logical element e = p * row_len + f lives at byte
    p * strides[0] + f * itemsize on chip, at e * itemsize in HBM."""
    if on_chip:
        p, f = divmod(start, row_len)
        origin = a[p].reshape(-1)[f:]
        steps = [a.strides[0]] + [s * a.itemsize for s in strides[1:]]
    else:
        origin = a.reshape(-1)[start:]
        steps = [s * a.itemsize for s in strides]
    return as_strided(origin, shape=tuple(counts), strides=tuple(steps))


def _reinterpret(base: np.ndarray, dtype: np.dtype, on_chip: bool, start: int,
                 dyn_stride: int) -> Tuple[np.ndarray, int, int]:
    """`base` viewed as `dtype` (bytes unchanged) with element offsets rescaled."""
    old, new = base.itemsize, dtype.itemsize
    if (start * old) % new or (dyn_stride * old) % new:
        rules.fail("ap", f"ap(dtype={dt.short_name(dtype)}): offset {start} of {dt.short_name(base.dtype)} "
                   f"elements is not a whole number of {new}-byte elements")
    try:
        viewed = base.view(dtype) if on_chip else base.reshape(-1).view(dtype)
    except ValueError as exc:
        rules.fail("ap", f"ap(dtype={dt.short_name(dtype)}): cannot reinterpret {base.shape} "
                   f"{dt.short_name(base.dtype)}: {exc}")
        raise
    return viewed, start * old // new, dyn_stride * old // new


def new_tensor(alloc: Allocation) -> NkiTensor:
    """Tensor covering a whole allocation."""
    return NkiTensor._of(alloc)
