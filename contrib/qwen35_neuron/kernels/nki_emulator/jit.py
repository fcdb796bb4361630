"""`nki.jit`, `nki.simulate` and `run_kernel`: run a kernel eagerly on the CPU.

Arguments that are numpy arrays (or CPU torch tensors) become shared-HBM tensors that
wrap the caller's storage, so a kernel that writes an input (an aliased state buffer)
updates the caller's array, as device memory would. Returned `shared_hbm` tensors come
back as numpy arrays, or torch tensors when any argument was a torch tensor.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from . import context
from . import dtypes as dt
from . import rules
from .cost_model import KernelCost, estimate
from .counters import InstructionRecord, Recorder, merge_counts
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


def launch(fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any],
           lnc: int = 1, grid_ndim: int = 0) -> Tuple[Any, KernelRun]:
    """Run `fn` as programs 0..lnc-1 and convert its outputs back to host arrays."""
    if int(lnc) < 1:
        rules.fail("spmd", f"launch grid {lnc} must be >= 1")
    torch_seen = [False]
    hbm_args = tuple(_to_hbm(a, f"arg{i}", torch_seen) for i, a in enumerate(args))
    hbm_kwargs = {k: _to_hbm(v, k, torch_seen) for k, v in kwargs.items()}
    state = context.LaunchState(num_programs=int(lnc), grid_ndim=grid_ndim)
    run = KernelRun(recorders=[], warnings=state.warnings)
    result: Any = None
    first_ids: Any = None
    for pid in range(int(lnc)):
        ctx = context.ProgramContext(pid, state)
        with context.running(ctx):
            out = fn(*hbm_args, **hbm_kwargs)
        ctx.memory.check()
        ids = _output_ids(out)
        if pid == 0:
            result, first_ids = out, ids
        elif ids != first_ids:
            rules.fail("lnc-outputs", "programs returned different output tensors; allocate "
                       "outputs identically (same order or same name) in every program")
        run.recorders.append(ctx.recorder)
        run.peak_sbuf_bytes.append(ctx.memory.peak_sbuf)
        run.peak_psum_banks.append(ctx.memory.peak_psum_banks)
        del ctx, out
    return _from_hbm(result, torch_seen[0]), run


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
    with context.running(ctx):
        yield ctx
    ctx.memory.check()
