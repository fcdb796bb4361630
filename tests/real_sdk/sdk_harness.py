"""Runs our code inside the real NxDI / NxD in NxDI's CPU mode: in this process (one rank) or as real
tensor-parallel processes.

- ``run_ranks(tp, "module:function", **payload)`` starts ``tp`` fresh processes (spawned, so each
  imports the SDK itself, as ``torchrun`` would start them) with torchrun's environment for a gloo
  group on 127.0.0.1. Each installs the shims for the closed binaries (none where the real SDK is)
  and returns ``module.function(**payload)``; every rank's result comes back (``torch.save``), in rank
  order. A rank that fails or hangs fails the run with its traceback. ``module`` is any module of
  this directory, so a new test file brings its own rank-side code.
- :func:`build_application` is the user's path: ``inference_config`` -> ``Qwen35MoeForCausalLM`` ->
  NxDI's own ``to_cpu()`` (HF -> Neuron conversion, NxD sharding for this rank, the real wrappers).
  In the pytest process :func:`one_rank_world` prepares the one-rank group ``to_cpu`` starts itself.
- :class:`CallLog` records what reaches the eager graphs behind NxDI's wrappers (forward hooks).
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import socket
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

HERE = Path(__file__).resolve().parent
RUN_TIMEOUT_S = 600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def resolve(job: str) -> Callable:
    """``"module:function"`` of this directory."""
    module, _, function = job.partition(":")
    return getattr(importlib.import_module(module), function)


def _rank_main(rank: int, tp: int, port: int, job: str, payload: dict, out: str) -> None:
    """One rank: the environment ``torchrun`` would give it, then the job."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(tp), RANK=str(rank),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(tp))
    torch.set_num_threads(1)
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    try:
        import shims

        shims.install()
        result: Any = resolve(job)(**payload)
    except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test with it
        result = {"rank_error": traceback.format_exc()}
    torch.save(result, Path(out) / f"rank{rank}.pt")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def run_ranks(ranks: int, job: str, timeout_s: float = RUN_TIMEOUT_S, **payload) -> list[Any]:
    """Run ``job`` (``"module:function"``) with ``payload`` on ``ranks`` processes; results in rank order."""
    context = multiprocessing.get_context("spawn")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="real-sdk-") as out:
        procs = [context.Process(target=_rank_main, args=(rank, ranks, port, job, payload, out), daemon=True)
                 for rank in range(ranks)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout_s)
        hung = [rank for rank, proc in enumerate(procs) if proc.is_alive()]
        for rank in hung:
            procs[rank].kill()
            procs[rank].join()
        if hung:
            raise RuntimeError(f"{job} on {ranks} rank(s): ranks {hung} did not finish within {timeout_s:.0f} s")
        results = []
        for rank, proc in enumerate(procs):
            path = Path(out) / f"rank{rank}.pt"
            if not path.exists():
                raise RuntimeError(f"{job} on {ranks} rank(s): rank {rank} exited with code {proc.exitcode}, no result")
            result = torch.load(path, weights_only=False)
            if isinstance(result, dict) and "rank_error" in result:
                raise RuntimeError(f"{job} on {ranks} rank(s), rank {rank} failed:\n{result['rank_error']}")
            results.append(result)
        return results


def one_rank_world() -> None:
    """What ``to_cpu()`` needs to start its own one-rank gloo group in this process: an address and a free
    port (its default, 29500, may be taken by another run on this machine)."""
    if not torch.distributed.is_initialized():
        os.environ.pop("WORLD_SIZE", None)
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(free_port())


def build_application(model_dir: str, settings, app_cls=None):
    """``Qwen35MoeForCausalLM`` (or ``app_cls``) on this rank through NxDI's ``to_cpu()``.

    ``to_cpu`` starts the gloo group when WORLD_SIZE is set (as under torchrun) - unconditionally, so
    a second application in the same process would start it twice: WORLD_SIZE goes once the group runs.
    """
    import qwen35_neuron.neuron as neuron
    from qwen35_neuron.neuron.model import Qwen35MoeForCausalLM

    app = (app_cls or Qwen35MoeForCausalLM)(model_dir, neuron.inference_config(model_dir, settings))
    app.to_cpu()
    os.environ.pop("WORLD_SIZE", None)
    return app


def graphs(app) -> tuple:
    """The eager modules NxDI's CPU mode put behind the CTE and TKG wrappers (one per wrapper with
    continuous batching, each holding the state buffers NxDI's copy-back keeps equal)."""
    return app.context_encoding_model.model, app.token_generation_model.model


class CallLog:
    """Every call that reaches the eager graphs: (graph, rows, slots, mask width, first cache position)."""

    def __init__(self, app) -> None:
        self.calls: list[tuple[str, int, int, int, int]] = []
        self.handles = [graph.register_forward_pre_hook(self._hook(tag))
                        for tag, graph in zip(("cte", "tkg"), graphs(app))]

    def _hook(self, tag: str):
        def hook(module, args):
            ids, mask, positions = args[:3]
            self.calls.append((tag, int(ids.shape[0]), int(ids.shape[1]), int(mask.shape[1]), int(positions[0, 0])))
        return hook

    def count(self, tag: str) -> int:
        return sum(1 for call in self.calls if call[0] == tag)

    def shapes(self) -> list[tuple[str, int, int]]:
        """(graph, rows, slots) of every call."""
        return [call[:3] for call in self.calls]

    def close(self) -> "CallLog":
        for handle in self.handles:
            handle.remove()
        self.handles = []
        return self


def cpu_engine(model_dir: str, **run_changes):
    """Our CPU runtime on the tier's shapes (the main suite proves it equal to transformers)."""
    from qwen35_neuron.config import RunConfig
    from qwen35_neuron.runtime.loading import load_engine
    from sdk_cases import BATCH, BUCKETS, MAX_LENGTH

    run = dict(batch_size=BATCH, context_buckets=BUCKETS, max_seq_len=MAX_LENGTH, gdr_chunk_size=8)
    return load_engine(model_dir, RunConfig(**{**run, **run_changes}))[1]
