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
    if not (0 <= start < stop <= size):
        rules.fail("index", f"slice {start}:{stop} on dim {dim} is empty or out of bounds "
                   f"for size {size}")
    return start, stop, step


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
        return tuple(int(s) for s in self._view.shape)

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
        return self.shape[0] if self.ndim else 1

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
        """Static access pattern `[[stride, count], ...]` in elements over this tensor's storage."""
        if vector_offset is not None:
            rules.fail("not-emulated", "ap(vector_offset=...) indirect gather is not emulated yet; "
                       "request it in EMULATOR_REQUESTS.md")
        if dtype is not None and dt.as_dtype(dtype) != self.dtype:
            rules.fail("not-emulated", "ap(dtype=...) reinterpretation is not emulated; use .view()")
        base = self._alloc.data
        on_chip = self.buffer.on_chip
        if not on_chip and not base.flags.c_contiguous:
            rules.fail("ap", "ap() needs contiguous HBM storage")
        item = base.itemsize
        row_len = base.size // base.shape[0] if on_chip else base.size  # logical elements per partition
        p0 = self.start_partition() if on_chip else 0
        byte_off = self._view.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        start = p0 * row_len + (byte_off - p0 * base.strides[0]) // item if on_chip else byte_off // item
        start += int(offset or 0)
        if scalar_offset is not None:
            value = scalar_offset.numpy().reshape(-1)[0] if isinstance(scalar_offset, NkiTensor) else scalar_offset
            start += int(value) * (self._view.strides[indirect_dim] // item)
        strides = [int(p[0]) for p in pattern]
        counts = [int(p[1]) for p in pattern]
        lo = start + sum(min(0, s * (c - 1)) for s, c in zip(strides, counts))
        hi = start + sum(max(0, s * (c - 1)) for s, c in zip(strides, counts))
        if lo < 0 or hi >= base.size or min(counts) <= 0:
            rules.fail("ap", f"access pattern {list(map(list, pattern))} at offset {start} reaches "
                       f"elements [{lo}, {hi}] outside storage of {base.size} elements")
        if on_chip:
            if counts[0] > 1 and strides[0] != row_len:
                rules.fail("ap", f"first ap pair stride {strides[0]} must equal the partition row "
                           f"length {row_len} on SBUF/PSUM")
            rules.check_partition_dim(counts[0], "ap")
            if any(abs(s) >= row_len for s, c in zip(strides[1:], counts[1:]) if c > 1):
                rules.fail("ap", f"access pattern {list(map(list, pattern))}: only the first pair may "
                           "step across partitions on SBUF/PSUM")

        def make(a: np.ndarray) -> np.ndarray:
            # logical element e = p * row_len + f lives at byte p * strides[0] + f * itemsize
            if on_chip:
                p, f = divmod(start, row_len)
                origin = a[p].reshape(-1)[f:]
                steps = [a.strides[0]] + [s * a.itemsize for s in strides[1:]]
            else:
                origin = a.reshape(-1)[start:]
                steps = [s * a.itemsize for s in strides]
            return as_strided(origin, shape=tuple(counts), strides=tuple(steps))
        state = None if self._alloc.state is None else make(self._alloc.state)
        return NkiTensor(self._alloc, make(base), state)


def new_tensor(alloc: Allocation) -> NkiTensor:
    """Tensor covering a whole allocation."""
    return NkiTensor._of(alloc)
