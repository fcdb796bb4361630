"""Count the bytes each op of a PyTorch forward reads and writes, on meta tensors (nothing allocated).

A :class:`ByteCounter` is a ``TorchDispatchMode``: every aten op the forward dispatches is recorded
with the buffers it reads and the bytes it writes; kernel launches and collectives are recorded by
their callers (:meth:`ByteCounter.record`). Costs are settled after the forward (:meth:`ByteCounter.
finish`), because whether a scatter can update its destination in place depends on what comes later.

Counting rules (an upper bound on HBM traffic: the compiler fuses some ops, which only lowers it):

- an op reads each tensor operand once and writes each result once; operand bytes are the *distinct*
  elements of the view it is given (a slice reads its slice, a broadcast (stride 0) reads its source);
- views and metadata ops (view, reshape of a contiguous tensor, slice, expand, transpose, split, ...)
  and allocation without a value (``empty``) are free; a factory with a value (``zeros``, ``arange``)
  writes its result;
- selection ops (``embedding``, ``index_select``, ``index``, ``gather``) read the selected elements and
  the index, not their whole source;
- scatter ops (``scatter``, ``index_put``, ``index_copy``, ``index_add``, ``slice_scatter``, ...) write the
  updated elements in place when their destination is dead afterwards and may be overwritten (an
  intermediate, or a state buffer aliased to a graph output - XLA updates a donated buffer in place);
  otherwise they first copy the destination (read + write of all of it);
- kernels (NKI custom calls) read their operands and write their results, nothing in between (a
  kernel that reads rows by index, like the MoE-decode kernel's experts, reads those rows);
- a graph output that is a view of a larger buffer is materialised (read + write of the view);
  an output that is its own input (state left unchanged) costs nothing.
"""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

aten = torch.ops.aten

_FREE = {aten.empty.memory_format, aten.empty_like.default, aten.empty_strided.default, aten.new_empty.default,
         aten._unsafe_view.default, aten.lift_fresh.default, aten.detach.default, aten.alias.default}
_SELECT = {aten.embedding.default, aten.index_select.default, aten.index.Tensor, aten.gather.default}
# scatter-like: (destination argument, update arguments); the update's elements are what gets written
_SCATTER = {
    aten.scatter.src: (0, (3,)), aten.scatter.value: (0, ()), aten.scatter_add.default: (0, (3,)),
    aten.scatter_reduce.two: (0, (3,)), aten.index_put.default: (0, (2,)), aten.index_copy.default: (0, (3,)),
    aten.index_add.default: (0, (3,)), aten.slice_scatter.default: (0, (1,)), aten.select_scatter.default: (0, (1,)),
}
_ACCUMULATING = {aten.scatter_add.default, aten.scatter_reduce.two, aten.index_add.default}


def distinct_bytes(t: torch.Tensor) -> int:
    """Bytes of the distinct elements a view addresses (broadcast dims count once)."""
    count = 1
    for size, stride in zip(t.shape, t.stride()):
        if stride != 0:
            count *= size
    return count * t.element_size() if t.numel() else 0


@dataclass
class OpRecord:
    """One recorded op: what it reads (buffer, bytes), what it writes, where it ran."""

    op: str
    where: str
    shapes: str
    reads: list[tuple[int, int]]
    writes: int
    scatter_into: tuple[int, int] | None = None  # (destination buffer, its bytes) for scatter ops
    copies: int = 0  # settled by finish(): bytes of a destination copied before a scatter

    @property
    def total(self) -> int:
        return sum(n for _, n in self.reads) + self.writes + self.copies


@dataclass
class CountResult:
    records: list[OpRecord]
    output_copies: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(r.total for r in self.records) + self.output_copies

    def costliest(self, n: int = 10) -> list[tuple[str, str, str, int, int]]:
        """The n costliest (where, op, shapes) groups: (where, op, shapes, count, total bytes);
        layer indices are folded (``layers.*``) so the same op of every layer is one group."""
        groups: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        for r in self.records:
            key = (re.sub(r"\.\d+(?=\.|$)", ".*", r.where), r.op, r.shapes)
            groups[key][0] += 1
            groups[key][1] += r.total
        ranked = sorted(groups.items(), key=lambda kv: -kv[1][1])[:n]
        return [(w, op, shapes, count, total) for (w, op, shapes), (count, total) in ranked]

    def bytes_where(self, pattern: str) -> int:
        """Total bytes of the ops whose module path matches ``pattern`` (a regular expression)."""
        return sum(r.total for r in self.records if re.search(pattern, r.where))


class ByteCounter(TorchDispatchMode):
    """Records the ops of a forward; ``donated`` tensors (aliased state buffers) may be updated in place."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[OpRecord] = []
        self._buffer: dict[int, int] = {}  # id(tensor) -> buffer id (views share their base's)
        self._keep: list[torch.Tensor] = []  # keeps tensors alive so ids stay unique
        self._base_bytes: dict[int, int] = {}
        self._donated: set[int] = set()
        self._produced: set[int] = set()  # buffers an op wrote (the rest are graph inputs)
        self._next = 0
        self._where: list[str] = [""]

    # ---- buffers -------------------------------------------------------------------------------
    def buffer_of(self, t: torch.Tensor) -> int:
        """The buffer behind ``t``; a tensor never seen before is a graph input."""
        key = id(t)
        if key not in self._buffer:
            self._bind(t, self._new_buffer(t, produced=False))
        return self._buffer[key]

    def _new_buffer(self, t: torch.Tensor, produced: bool = True) -> int:
        self._next += 1
        self._base_bytes[self._next] = distinct_bytes(t)
        if produced:
            self._produced.add(self._next)
        return self._next

    def _bind(self, t: torch.Tensor, buffer: int) -> None:
        self._buffer[id(t)] = buffer
        self._keep.append(t)

    def donate(self, tensors: Iterable[torch.Tensor]) -> None:
        """Mark graph inputs whose buffers are aliased to outputs (may be updated in place)."""
        for t in tensors:
            self._donated.add(self.buffer_of(t))

    # ---- where in the model --------------------------------------------------------------------
    @contextlib.contextmanager
    def tracking(self, model: nn.Module) -> Iterator[None]:
        """Label every op with the qualified name of the innermost module running it."""
        names = {m: n for n, m in model.named_modules()}
        handles = []
        for module, name in names.items():
            handles.append(module.register_forward_pre_hook(lambda m, a, n=name: self._enter(n)))
            handles.append(module.register_forward_hook(lambda m, a, o: self._leave()))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def _enter(self, name: str) -> None:
        self._where.append(name)

    def _leave(self) -> None:
        self._where.pop()

    # ---- recording -----------------------------------------------------------------------------
    def record(self, op: str, inputs: Sequence[Any], outputs: Sequence[Any],
               reads: list[tuple[int, int]] | None = None) -> None:
        """Record an op the dispatcher does not see as one (a kernel launch, a collective): it reads
        its tensor inputs (or ``reads``, when it reads only part of some) and writes its outputs."""
        tensors_in = [t for t in inputs if isinstance(t, torch.Tensor)]
        tensors_out = [t for t in outputs if isinstance(t, torch.Tensor)]
        if reads is None:
            reads = [(self.buffer_of(t), distinct_bytes(t)) for t in tensors_in]
        for t in tensors_out:
            self._bind(t, self._new_buffer(t))
        self.records.append(OpRecord(op, self._where[-1], _shapes(tensors_in), reads,
                                     sum(distinct_bytes(t) for t in tensors_out)))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        flat_in = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        flat_out = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
        if func in _FREE or _is_view(func):
            base = self.buffer_of(flat_in[0]) if flat_in else None
            for o in flat_out:
                self._bind(o, base if base is not None else self._new_buffer(o))
            return out
        if func._schema.is_mutable:  # in-place op: writes into its first argument
            self._record_inplace(func, flat_in)
            for o in flat_out:
                self._bind(o, self.buffer_of(flat_in[0]))
            return out
        name = _op_name(func)
        if func in _SELECT:
            source, *index = flat_in
            reads = [(self.buffer_of(source), sum(distinct_bytes(o) for o in flat_out))]
            reads += [(self.buffer_of(t), distinct_bytes(t)) for t in index]
            record = OpRecord(name, self._where[-1], _shapes(flat_in), reads, sum(distinct_bytes(o) for o in flat_out))
        elif func in _SCATTER:
            record = self._scatter_record(func, name, args, flat_in)
        else:
            reads = [(self.buffer_of(t), distinct_bytes(t)) for t in flat_in]
            record = OpRecord(name, self._where[-1], _shapes(flat_in), reads, sum(distinct_bytes(o) for o in flat_out))
        self.records.append(record)
        for o in flat_out:
            self._bind(o, self._new_buffer(o))
        return out

    def _scatter_record(self, func, name: str, args: tuple, flat_in: list[torch.Tensor]) -> OpRecord:
        dest_pos, update_pos = _SCATTER[func]
        dest = args[dest_pos]
        updates = [args[i] for i in update_pos if i < len(args) and isinstance(args[i], torch.Tensor)]
        if func is aten.index_put.default:
            index = [t for t in args[1] if isinstance(t, torch.Tensor)]
        else:
            index = [a for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a is not dest
                     and i not in update_pos]
        written = (sum(distinct_bytes(u) for u in updates) if updates
                   else sum(t.numel() for t in index) * dest.element_size())
        reads = [(self.buffer_of(t), distinct_bytes(t)) for t in updates + index]
        if func in _ACCUMULATING:  # read-modify-write of the updated slots
            reads.append((self.buffer_of(dest), written))
        dest_buffer = self.buffer_of(dest)
        return OpRecord(name, self._where[-1], _shapes(flat_in), reads, written,
                        scatter_into=(dest_buffer, self._base_bytes[dest_buffer]))

    def _record_inplace(self, func, flat_in: list[torch.Tensor]) -> None:
        dest, *rest = flat_in
        overwrite = func in (aten.copy_.default, aten.fill_.Scalar, aten.zero_.default)
        reads = [(self.buffer_of(t), distinct_bytes(t)) for t in (rest if overwrite else flat_in)]
        self.records.append(OpRecord(_op_name(func), self._where[-1], _shapes(flat_in), reads, distinct_bytes(dest)))

    # ---- settling ------------------------------------------------------------------------------
    def finish(self, outputs: Sequence[torch.Tensor], aliased_inputs: Sequence[torch.Tensor] = ()) -> CountResult:
        """Settle in-place scatters and output copies. ``aliased_inputs[i]`` is the input buffer that
        output ``outputs[len(outputs) - len(aliased_inputs) + i]`` is aliased to."""
        output_buffers = {self.buffer_of(o) for o in outputs}
        last_read: dict[int, int] = {}
        for i, r in enumerate(self.records):
            for buffer, _ in r.reads:
                last_read[buffer] = i
        for i, r in enumerate(self.records):
            if r.scatter_into is None:
                continue
            buffer, size = r.scatter_into
            dead = last_read.get(buffer, -1) <= i and buffer not in output_buffers
            writable = buffer in self._donated or buffer in self._produced
            if not (dead and writable):
                r.copies = 2 * size
        copies = 0
        first_aliased = len(outputs) - len(aliased_inputs)
        for i, o in enumerate(outputs):
            buffer = self.buffer_of(o)
            if i >= first_aliased and buffer == self.buffer_of(aliased_inputs[i - first_aliased]) \
                    and distinct_bytes(o) == self._base_bytes[buffer]:
                continue  # the state came back unchanged
            if distinct_bytes(o) < self._base_bytes[buffer] or not o.is_contiguous():
                copies += 2 * distinct_bytes(o)
        return CountResult(list(self.records), copies)


def _is_view(func) -> bool:
    return any(r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns)


def _op_name(func) -> str:
    name = func.name() if hasattr(func, "name") else str(func)
    return name.replace("aten::", "aten.")


def _shapes(tensors: Sequence[torch.Tensor]) -> str:
    return " ".join("x".join(str(s) for s in t.shape) or "()" for t in tensors[:4])
