"""`nki.collectives`: communication between ranks (logical NeuronCores) of a multi-rank launch.

A launch with `ranks=R` (`jit.launch_ranks`) runs R copies of the kernel, each with its own HBM,
concurrently with their LNC programs; a collective pairs the k-th call of program p on every
rank of its replica subgroup with the same call of program p on the others (NKI docs,
nki.collectives: all_reduce, all_gather, reduce_scatter, all_to_all, collective_permute,
rank_id). Tensors may be in HBM or SBUF but not mixed; several tensors (coalesced) only in
HBM. Reductions run in fp32 and round to each dst's dtype. Ring-style implicit permutes
(`collective_permute_implicit*`) and the `_v` variants are outside the emulated subset.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from . import context
from . import dtypes as dt
from . import rules
from .language import NKIObject
from .operands import record, require_tile
from .registers import VirtualRegister
from .tensor import NkiTensor

_REDUCE_OPS = ("add", "minimum", "maximum")


@dataclass
class ReplicaGroup(NKIObject):
    """Groups of ranks that run a collective together (disjoint lists of rank ids)."""

    replica_groups: Any = None


def rank_id(name: Optional[str] = None) -> VirtualRegister:
    """This rank's id, in a register."""
    return VirtualRegister(context.current().launch.rank)


def _group(instr: str, replica_group: Any) -> Tuple[int, ...]:
    """The ranks of this rank's subgroup, in order."""
    launch = context.current().launch
    groups = getattr(replica_group, "replica_groups", replica_group)
    if groups is None:
        groups = [list(range(launch.num_ranks))]
    groups = [tuple(int(r) for r in g) for g in groups]
    mine = [g for g in groups if launch.rank in g]
    if len(mine) != 1:
        rules.fail("collective", f"{instr}: rank {launch.rank} must be in exactly one subgroup of {groups}")
    bad = [r for r in mine[0] if not 0 <= r < launch.num_ranks]
    if bad:
        rules.fail("collective", f"{instr}: ranks {bad} of replica group {groups} do not exist in this "
                   f"launch of {launch.num_ranks} rank(s)")
    return mine[0]


def _operands(instr: str, srcs: Sequence[NkiTensor], dsts: Sequence[NkiTensor]) -> None:
    srcs, dsts = list(srcs), list(dsts)
    if len(srcs) != len(dsts) or not srcs:
        rules.fail("collective", f"{instr}: {len(srcs)} srcs and {len(dsts)} dsts; one dst per src")
    tiles = srcs + dsts
    for i, t in enumerate(tiles):
        require_tile(instr, f"tensor {i}", t)
    kinds = {t.buffer.is_hbm for t in tiles}
    if len(kinds) > 1:
        rules.fail("collective", f"{instr}: mixes HBM and SBUF tensors; all must be in one")
    if any(t.buffer.value == "psum" for t in tiles):
        rules.fail("collective", f"{instr}: PSUM tensors cannot take part in a collective")
    if len(srcs) > 1 and not srcs[0].buffer.is_hbm:
        rules.fail("collective", f"{instr}: several tensors at once (coalesced) only in HBM")


def _meet(instr: str, replica_group: Any, data: Any) -> Tuple[List[Any], int]:
    """Every group member's `data` (group order) and this rank's position in the group."""
    ctx = context.current()
    group = _group(instr, replica_group)
    cross = ctx.launch.cross
    if len(group) == 1 or cross is None:
        return [data], 0
    slots = [r * ctx.launch.num_programs + ctx.program_id for r in group]
    got = cross.gather(ctx.slot, (instr, tuple(slots)), slots, f"{instr}(replica group {group})", data)  # type: ignore[attr-defined]
    return got, group.index(ctx.launch.rank)


def _record(instr: str, dsts: Sequence[NkiTensor], srcs: Sequence[NkiTensor]) -> None:
    nbytes = sum(t.size * t.dtype.itemsize for t in dsts)
    record("DMA", instr, dsts[0], list(srcs), free_elems=dsts[0].size, nbytes=nbytes,
           descriptors=sum(t.partitions if t.buffer.on_chip else 1 for t in dsts))


def _reduce_fn(instr: str, op: Any) -> Any:
    if getattr(op, "name", None) not in _REDUCE_OPS:
        rules.fail("operator", f"{instr}: op must be nl.add, nl.minimum or nl.maximum, got {op!r}")
    return op.fn


def _reduced(instr: str, op: Any, parts: List[np.ndarray]) -> np.ndarray:
    fn = _reduce_fn(instr, op)
    out = parts[0].astype(np.float32)
    with np.errstate(all="ignore"):
        for p in parts[1:]:
            out = np.asarray(fn(out, p.astype(np.float32)), dtype=np.float32)
    return out


def all_reduce(srcs: Sequence[NkiTensor], dsts: Sequence[NkiTensor], replica_group: Any, op: Any,
               priority: Optional[int] = None, name: Optional[str] = None) -> None:
    """dsts[i] = op over the group of srcs[i]."""
    instr = "all_reduce"
    _operands(instr, srcs, dsts)
    for s, d in zip(srcs, dsts):
        rules.check_element_count(instr, d.size, s.size)
    mine = [np.array(s._read(instr)) for s in srcs]
    everyone, _ = _meet(instr, replica_group, mine)
    for i, d in enumerate(dsts):
        d._write(dt.round_to(_reduced(instr, op, [e[i] for e in everyone]), d.dtype).reshape(d.shape), instr)
    _record(instr, dsts, srcs)


def _concat_dim(instr: str, dim: int, t: NkiTensor) -> int:
    dim = int(dim)
    if t.buffer.is_hbm and dim != 0:
        rules.fail("collective", f"{instr}: collective_dim {dim}: HBM tensors support only 0")
    if t.buffer.on_chip and (t.ndim != 2 or dim not in (0, 1)):
        rules.fail("collective", f"{instr}: SBUF collectives take 2-D tensors and collective_dim 0 or 1")
    return dim


def all_gather(srcs: Sequence[NkiTensor], dsts: Sequence[NkiTensor], replica_group: Any, collective_dim: int,
               priority: Optional[int] = None, name: Optional[str] = None) -> None:
    """dsts[i] = the group's srcs[i] concatenated along collective_dim, in group order."""
    instr = "all_gather"
    _operands(instr, srcs, dsts)
    mine = [np.array(s._read(instr)) for s in srcs]
    everyone, _ = _meet(instr, replica_group, mine)
    for i, d in enumerate(dsts):
        dim = _concat_dim(instr, collective_dim, d)
        joined = np.concatenate([e[i] for e in everyone], axis=dim)
        rules.check_element_count(instr, d.size, joined.size)
        d._write(joined.reshape(d.shape), instr)
    _record(instr, dsts, srcs)


def reduce_scatter(srcs: Sequence[NkiTensor], dsts: Sequence[NkiTensor], replica_group: Any, collective_dim: int,
                   op: Any, priority: Optional[int] = None, name: Optional[str] = None) -> None:
    """dsts[i] = this rank's chunk (group position) of op over the group of srcs[i], split along
    collective_dim."""
    instr = "reduce_scatter"
    _operands(instr, srcs, dsts)
    mine = [np.array(s._read(instr)) for s in srcs]
    everyone, pos = _meet(instr, replica_group, mine)
    for i, d in enumerate(dsts):
        dim = _concat_dim(instr, collective_dim, srcs[i])
        total = _reduced(instr, op, [e[i] for e in everyone])
        chunk = np.array_split(total, len(everyone), axis=dim)[pos]
        rules.check_element_count(instr, d.size, chunk.size)
        d._write(dt.round_to(chunk, d.dtype).reshape(d.shape), instr)
    _record(instr, dsts, srcs)


def all_to_all(srcs: Sequence[NkiTensor], dsts: Sequence[NkiTensor], replica_group: Any, collective_dim: int,
               priority: Optional[int] = None, name: Optional[str] = None) -> None:
    """Each rank splits srcs[i] along collective_dim into one chunk per group member; dsts[i]
    gets chunk j of every member (j = this rank's group position), concatenated in group order."""
    instr = "all_to_all"
    _operands(instr, srcs, dsts)
    mine = [np.array(s._read(instr)) for s in srcs]
    everyone, pos = _meet(instr, replica_group, mine)
    for i, d in enumerate(dsts):
        dim = _concat_dim(instr, collective_dim, srcs[i])
        joined = np.concatenate([np.array_split(e[i], len(everyone), axis=dim)[pos] for e in everyone], axis=dim)
        rules.check_element_count(instr, d.size, joined.size)
        d._write(joined.reshape(d.shape), instr)
    _record(instr, dsts, srcs)


def collective_permute(srcs: Sequence[NkiTensor], dsts: Sequence[NkiTensor],
                       source_target_pairs: Sequence[Tuple[int, int]], priority: Optional[int] = None,
                       name: Optional[str] = None) -> None:
    """Rank t's dsts receive rank s's srcs for each (s, t) pair; a rank no pair targets keeps
    its dsts. Every rank of the launch takes part."""
    instr = "collective_permute"
    _operands(instr, srcs, dsts)
    ctx = context.current()
    pairs = [(int(a), int(b)) for a, b in source_target_pairs]
    everyone, _ = _meet(instr, [list(range(ctx.launch.num_ranks))], [np.array(s._read(instr)) for s in srcs])
    sources = [a for a, b in pairs if b == ctx.launch.rank]
    if len(sources) > 1:
        rules.fail("collective", f"{instr}: rank {ctx.launch.rank} is the target of several pairs {pairs}")
    if sources:
        for i, d in enumerate(dsts):
            d._write(everyone[sources[0]][i].reshape(d.shape), instr)
    _record(instr, dsts, srcs)


def _outside(name: str) -> Any:
    def call(*args: Any, **kwargs: Any) -> None:
        rules.fail("not-emulated", f"nki.collectives.{name} is outside the emulated subset (API.md)")
    call.__name__ = name
    return call


all_gather_v = _outside("all_gather_v")
all_to_all_v = _outside("all_to_all_v")
collective_permute_implicit = _outside("collective_permute_implicit")
collective_permute_implicit_reduce = _outside("collective_permute_implicit_reduce")
collective_permute_implicit_current_processing_rank_id = _outside(
    "collective_permute_implicit_current_processing_rank_id")
