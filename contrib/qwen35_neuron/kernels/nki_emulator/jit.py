"""`nki.jit`, `nki.simulate` and `run_kernel`: run a kernel eagerly on the CPU.

Arguments that are numpy arrays (or CPU torch tensors) become shared-HBM tensors that
wrap the caller's storage, so a kernel that writes an input (an aliased state buffer)
updates the caller's array, as device memory would. Returned `shared_hbm` tensors come
back as numpy arrays, or torch tensors when any argument was a torch tensor.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from . import context
from . import dtypes as dt
from . import rules
from .cost_model import KernelCost, estimate
from .counters import InstructionRecord, Recorder, merge_counts
from .isa_lnc import CrossCore, LaunchAborted
from .memory import MemoryRegion, wrap_host_array
from .tensor import NkiTensor, new_tensor


@dataclass
class KernelRun:
    """What one launch did: per-program instruction records, warnings, memory peaks."""

    recorders: List[Recorder]
    warnings: List[str] = field(default_factory=list)
    peak_sbuf_bytes: List[int] = field(default_factory=list)
    peak_psum_banks: List[int] = field(default_factory=list)

    @property
    def counts(self) -> Dict[str, int]:
        """Instructions per engine, summed over programs."""
        return merge_counts(self.recorders)

    @property
    def records(self) -> List[InstructionRecord]:
        return [r for rec in self.recorders for r in rec.records]

    @property
    def dma_bytes(self) -> int:
        return sum(rec.dma_bytes for rec in self.recorders)

    @functools.cached_property
    def cost(self) -> KernelCost:
        return estimate(self.recorders)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _torch_to_numpy(x: Any) -> np.ndarray:
    import torch
    t = x.detach()
    if t.device.type != "cpu":
        rules.fail("argument", f"torch tensor on {t.device}; the emulator needs CPU tensors")
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().view(dt.bfloat16)
    return t.contiguous().numpy() if not t.is_contiguous() else t.numpy()


def _numpy_to_torch(a: np.ndarray) -> Any:
    import torch
    if a.dtype == dt.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _to_hbm(x: Any, name: str, torch_seen: List[bool]) -> Any:
    if _is_torch(x):
        torch_seen[0] = True
        x = _torch_to_numpy(x)
    if isinstance(x, np.ndarray):
        arr = x if x.flags.c_contiguous else np.ascontiguousarray(x)
        return new_tensor(wrap_host_array(arr, MemoryRegion.shared_hbm, name))
    if isinstance(x, (tuple, list)) and any(isinstance(v, np.ndarray) or _is_torch(v) for v in x):
        return type(x)(_to_hbm(v, f"{name}[{i}]", torch_seen) for i, v in enumerate(x))
    return x


def _from_hbm(out: Any, as_torch: bool) -> Any:
    if out is None:
        return None
    if isinstance(out, (tuple, list)):
        return type(out)(_from_hbm(o, as_torch) for o in out)
    if not isinstance(out, NkiTensor):
        return out
    if out.buffer is not MemoryRegion.shared_hbm:
        rules.fail("kernel-output", f"kernel returned a {out.buffer.value} tensor {out.shape}; "
                   "outputs must be allocated with buffer=nl.shared_hbm")
    arr = np.array(out._view)
    return _numpy_to_torch(arr) if as_torch else arr


def _output_ids(out: Any) -> Any:
    if isinstance(out, (tuple, list)):
        return tuple(_output_ids(o) for o in out)
    return out._alloc.id if isinstance(out, NkiTensor) else None


def _run_program(fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any],
                 ctx: context.ProgramContext) -> Any:
    with context.running(ctx):
        out = fn(*args, **kwargs)
    ctx.memory.check()
    return out


def _run_concurrently(fn: Callable[..., Any], calls: List[Tuple[Tuple[Any, ...], Dict[str, Any]]],
                      ctxs: List[context.ProgramContext], cross: CrossCore) -> List[Any]:
    """Programs 1.. in threads, program 0 in this thread (so a signal such as a test's time
    limit interrupts it); a failure in any program stops the others at their next instruction
    or wait, and the first real failure is raised here. `calls[i]` are program i's arguments."""
    outs: List[Any] = [None] * len(ctxs)
    errors: List[Optional[BaseException]] = [None] * len(ctxs)

    def body(i: int) -> None:
        try:
            outs[i] = _run_program(fn, calls[i][0], calls[i][1], ctxs[i])
        except BaseException as exc:  # noqa: BLE001 - re-raised in the launching thread
            errors[i] = exc
            cross.abort()
        finally:
            cross.finish(i)

    threads = [threading.Thread(target=body, args=(i,), name=f"nki-program-{i}", daemon=True)
               for i in range(1, len(ctxs))]
    for t in threads:
        t.start()
    try:
        body(0)
    finally:
        if errors[0] is not None:
            cross.abort()
        for t in threads:
            t.join()
    real = [(i, e) for i, e in enumerate(errors) if e is not None and not isinstance(e, LaunchAborted)]
    if real:
        i, exc = real[0]
        ctx = ctxs[i]
        where = f"program {ctx.program_id} of {ctx.launch.num_programs}" + \
            (f", rank {ctx.launch.rank} of {ctx.launch.num_ranks}" if ctx.launch.num_ranks > 1 else "")
        if hasattr(exc, "add_note"):
            exc.add_note(f"(in {where})")
        raise exc
    left = cross.undelivered()
    if left:
        rules.fail("lnc-sync", left)
    return outs


def _host_arguments(args: Tuple[Any, ...], kwargs: Dict[str, Any], torch_seen: List[bool]
                    ) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    return (tuple(_to_hbm(a, f"arg{i}", torch_seen) for i, a in enumerate(args)),
            {k: _to_hbm(v, k, torch_seen) for k, v in kwargs.items()})


def launch_ranks(fn: Callable[..., Any], rank_calls: List[Tuple[Tuple[Any, ...], Dict[str, Any]]],
                 lnc: int = 1, grid_ndim: int = 0) -> Tuple[List[Any], List[KernelRun]]:
    """Run `fn` on len(rank_calls) ranks (logical NeuronCores, each with its own HBM), each as
    programs 0..lnc-1, all concurrently; rank r gets rank_calls[r] as its arguments. Ranks meet
    in nki.collectives; programs of one rank in sendrecv / core_barrier. Returns each rank's
    outputs (host arrays) and KernelRun."""
    if int(lnc) < 1:
        rules.fail("spmd", f"launch grid {lnc} must be >= 1")
    ranks = len(rank_calls)
    torch_seen = [False]
    states, ctxs, calls = [], [], []
    for r, (args, kwargs) in enumerate(rank_calls):
        call = _host_arguments(args, kwargs, torch_seen)
        state = context.LaunchState(num_programs=int(lnc), grid_ndim=grid_ndim, rank=r, num_ranks=ranks)
        states.append(state)
        for pid in range(int(lnc)):
            ctxs.append(context.ProgramContext(pid, state))
            calls.append(call)
    if len(ctxs) == 1:
        outs = [_run_program(fn, calls[0][0], calls[0][1], ctxs[0])]
    else:
        cross = CrossCore(len(ctxs))
        for state in states:
            state.cross = cross
        outs = _run_concurrently(fn, calls, ctxs, cross)
    results, runs = [], []
    for r, state in enumerate(states):
        mine = [(c, o) for c, o in zip(ctxs, outs) if c.launch is state]
        first_ids = _output_ids(mine[0][1])
        if any(_output_ids(o) != first_ids for _, o in mine[1:]):
            rules.fail("lnc-outputs", "programs returned different output tensors; allocate "
                       "outputs identically (same order or same name) in every program")
        run = KernelRun(recorders=[c.recorder for c, _ in mine], warnings=state.warnings,
                        peak_sbuf_bytes=[c.memory.peak_sbuf for c, _ in mine],
                        peak_psum_banks=[c.memory.peak_psum_banks for c, _ in mine])
        results.append(_from_hbm(mine[0][1], torch_seen[0]))
        runs.append(run)
    return results, runs


def launch(fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any],
           lnc: int = 1, grid_ndim: int = 0) -> Tuple[Any, KernelRun]:
    """Run `fn` as programs 0..lnc-1 (concurrently when lnc > 1) and convert its outputs back
    to host arrays."""
    outs, runs = launch_ranks(fn, [(args, kwargs)], lnc=lnc, grid_ndim=grid_ndim)
    return outs[0], runs[0]


class Kernel:
    """A jitted kernel: call it (LNC=1) or index it with the LNC degree first (`k[2](...)`)."""

    def __init__(self, fn: Callable[..., Any], lnc: Optional[int] = None) -> None:
        self.fn, self.lnc = fn, lnc
        self.last_run: Optional[KernelRun] = None
        functools.update_wrapper(self, fn)

    def __getitem__(self, grid: Any) -> "Kernel":
        dims = grid if isinstance(grid, tuple) else (grid,)
        if len(dims) != 1:
            rules.fail("spmd", f"launch grid {grid}: current NKI takes one number (the LNC degree)")
        return Kernel(self.fn, int(dims[0]))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if context.in_program():
            # called from inside a running kernel (nki-library's transformer_tkg calls its jitted
            # attention_block_tkg): a plain call in the same program, its tensors as they are
            return self.fn(*args, **kwargs)
        outputs, self.last_run = launch(self.fn, args, kwargs, lnc=self.lnc or 1,
                                        grid_ndim=0 if self.lnc is None else 1)
        return outputs


def jit(fn: Optional[Callable[..., Any]] = None, **kwargs: Any) -> Any:
    """`@nki.jit`, `@nki.jit()`, `@nki.jit(mode=...)`: keyword options are ignored."""
    if fn is None:
        return lambda f: Kernel(f)
    return fn if isinstance(fn, Kernel) else Kernel(fn)


def simulate(kernel: Any) -> Kernel:
    """`nki.simulate(kernel)(*args)`: the emulator always simulates, so this is the kernel."""
    return kernel if isinstance(kernel, Kernel) else Kernel(kernel)


def run_kernel(kernel: Any, *args: Any, lnc: Optional[int] = None, **kwargs: Any) -> Tuple[Any, KernelRun]:
    """Run and also return the `KernelRun` (counts, records, warnings, modelled cost).

    `lnc` defaults to the kernel's own grid (`kernel[2]`) or 1.
    """
    fn = kernel.fn if isinstance(kernel, Kernel) else kernel
    own = kernel.lnc if isinstance(kernel, Kernel) else None
    n = lnc if lnc is not None else (own or 1)
    grid_ndim = 1 if (lnc is not None and lnc > 1) or own is not None else 0
    return launch(fn, args, kwargs, lnc=n, grid_ndim=grid_ndim)


@contextlib.contextmanager
def fresh_program() -> Iterator[context.ProgramContext]:
    """A new program context for top-level use (tests): its own budget and recorder."""
    ctx = context.ProgramContext()
    ctx.top_level = True
    with context.running(ctx):
        yield ctx
    ctx.memory.check()
