"""Runs code inside the real NxDI / NxD in NxDI's CPU mode, as real tensor-parallel processes.

``run_ranks(tp, job, **payload)`` starts ``tp`` fresh processes (spawned, so each imports the SDK
itself, as ``torchrun`` would start them), each one rank of a gloo group on 127.0.0.1. In each, the
shims for the closed binaries are installed (none where the real SDK is), then ``sdk_probes.JOBS[job]``
runs with the payload; every rank's result comes back (``torch.save``), in rank order. A rank that
fails or hangs fails the run with its output.

:func:`build_application` is the user's path: ``inference_config`` -> ``Qwen35MoeForCausalLM`` ->
NxDI's own ``to_cpu()`` (HF -> Neuron conversion, NxD sharding for this rank, the real ModelWrapper).
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
        result: Any = job_function(job)(**payload)
    except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test with it
        result = {"rank_error": traceback.format_exc()}
    torch.save(result, Path(out) / f"rank{rank}.pt")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def job_function(job: str) -> Callable:
    """``sdk_probes.JOBS[job]``, or ``module:function`` for a job another tier defines (its module on
    sys.path, which spawned ranks inherit)."""
    if ":" in job:
        module, _, name = job.partition(":")
        return getattr(importlib.import_module(module), name)
    import sdk_probes

    return sdk_probes.JOBS[job]


def run_ranks(ranks: int, job: str, timeout_s: float = RUN_TIMEOUT_S, **payload) -> list[Any]:
    """Run ``sdk_probes.JOBS[job](**payload)`` on ``ranks`` processes; the results in rank order."""
    tp = ranks
    context = multiprocessing.get_context("spawn")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="real-sdk-") as out:
        procs = [context.Process(target=_rank_main, args=(rank, tp, port, job, payload, out), daemon=True)
                 for rank in range(tp)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout_s)
        hung = [rank for rank, proc in enumerate(procs) if proc.is_alive()]
        for rank in hung:
            procs[rank].kill()
            procs[rank].join()
        if hung:
            raise RuntimeError(f"{job} at TP {tp}: ranks {hung} did not finish within {timeout_s:.0f} s")
        results = []
        for rank, proc in enumerate(procs):
            path = Path(out) / f"rank{rank}.pt"
            if not path.exists():
                raise RuntimeError(f"{job} at TP {tp}: rank {rank} exited with code {proc.exitcode} and no result")
            result = torch.load(path, weights_only=False)
            if isinstance(result, dict) and "rank_error" in result:
                raise RuntimeError(f"{job} at TP {tp}, rank {rank} failed:\n{result['rank_error']}")
            results.append(result)
        return results


def build_application(model_dir: str, settings):
    """``Qwen35MoeForCausalLM`` on this rank through NxDI's ``to_cpu()``.

    ``to_cpu`` starts the gloo group when WORLD_SIZE is set (as under torchrun) - unconditionally, so
    a second application in the same process would start it twice: WORLD_SIZE goes once the group runs.
    """
    import qwen35_neuron.neuron as neuron
    from qwen35_neuron.neuron.model import Qwen35MoeForCausalLM

    app = Qwen35MoeForCausalLM(model_dir, neuron.inference_config(model_dir, settings))
    app.to_cpu()
    os.environ.pop("WORLD_SIZE", None)
    return app
