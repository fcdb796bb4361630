"""Timing generation in NxDI's ``benchmark_report.json`` layout, for the CPU runtime and trn2 alike.

NxDI's ``benchmark_sampling`` (``utils/benchmark.py``) writes one entry per model part,
``e2e_model``, ``context_encoding_model`` and ``token_generation_model``, each with
``latency_ms_p50/p90/p95/p99/p100/avg`` over every timed call and ``throughput`` =
runs x tokens per run x batch / total seconds of those calls, where tokens per run are the whole
sequence for end-to-end, the prompt for context encoding and the new tokens for token generation
(NxDI counts all new tokens, although the first comes out of context encoding). We write the same
keys with the same definitions, so one reader serves NxDI's reports and ours.

:class:`PhaseTimer` times the model calls of one generation without touching the loop that makes
them: it wraps the CPU engine (``forward``) or a loaded NxDI application (called directly); a call is
context encoding when it is the first after ``reset()`` or carries more than one token per row,
token generation otherwise. A context-encoding latency is one context-encoding call of the whole batch
(a prompt past the largest bucket takes several calls, each timed, as NxDI's report times every call
of its context-encoding graph; NxDI's application may also split a batch into ``ctx_batch_size``
calls that it times one by one, where we time the application's call).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import InputError

END_TO_END = "e2e_model"
CONTEXT_ENCODING = "context_encoding_model"
TOKEN_GENERATION = "token_generation_model"
MODEL_PARTS = (END_TO_END, CONTEXT_ENCODING, TOKEN_GENERATION)
PERCENTILES = (50, 90, 95, 99, 100)
LATENCY_KEYS = tuple(f"latency_ms_p{p}" for p in PERCENTILES) + ("latency_ms_avg",)
REPORT_KEYS = LATENCY_KEYS + ("throughput",)
DEFAULT_REPORT_PATH = "./benchmark_report.json"  # NxDI's BENCHMARK_REPORT_PATH

Listener = Callable[[str, float], None]


class PhaseTimer:
    """A stand-in for an engine or application that reports each model call as
    ``listener(CONTEXT_ENCODING | TOKEN_GENERATION, seconds)``; everything else is delegated."""

    def __init__(self, target: Any, listener: Listener | None, clock: Callable[[], float] = time.perf_counter) -> None:
        self._target, self._listener, self._clock = target, listener, clock
        self._first_call = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def reset(self) -> None:
        self._target.reset()
        self._first_call = True

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # the CPU engine's entry point
        return self._timed(self._target.forward, args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # an NxDI application's entry point
        return self._timed(self._target, args, kwargs)

    def _timed(self, call: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        input_ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        phase = CONTEXT_ENCODING if self._first_call or input_ids.shape[-1] > 1 else TOKEN_GENERATION
        self._first_call = False
        start = self._clock()
        out = call(*args, **kwargs)
        if self._listener is not None:
            self._listener(phase, self._clock() - start)
        return out


@dataclass
class BenchmarkRecord:
    """Wall-clock seconds of every timed end-to-end run and model call, and what each run did."""

    batch_size: int
    input_length: int
    new_tokens: int
    latencies: dict[str, list[float]] = field(default_factory=lambda: {part: [] for part in MODEL_PARTS})

    def add(self, phase: str, seconds: float) -> None:
        self.latencies[phase].append(seconds)

    @property
    def runs(self) -> int:
        return len(self.latencies[END_TO_END])


def measure(generate_once: Callable[[PhaseTimer], Any], target: Any, record: BenchmarkRecord, runs: int,
            warmup: int = 1, clock: Callable[[], float] = time.perf_counter,
            on_run: Callable[[int], None] | None = None) -> BenchmarkRecord:
    """Run ``generate_once(timer)`` ``warmup`` times untimed, then ``runs`` times timed."""
    for index in range(warmup + runs):
        timed = index >= warmup
        timer = PhaseTimer(target, record.add if timed else None, clock)
        start = clock()
        generate_once(timer)
        if timed:
            record.add(END_TO_END, clock() - start)
            if on_run is not None:
                on_run(index - warmup + 1)
    return record


def latency_summary(latencies: list[float], tokens_per_run: int, batch_size: int, runs: int) -> dict | None:
    """NxDI's ``generate_report`` for one model part (None when it was never called)."""
    if not latencies:
        return None
    seconds = np.asarray(latencies, dtype=np.float64)
    summary = {f"latency_ms_p{p}": float(np.percentile(seconds, p) * 1000) for p in PERCENTILES}
    summary["latency_ms_avg"] = float(seconds.mean() * 1000)
    summary["throughput"] = float(runs * tokens_per_run * batch_size / seconds.sum())
    return summary


def benchmark_report(record: BenchmarkRecord) -> dict[str, dict | None]:
    """The report of one benchmark case, keyed and computed as NxDI's ``benchmark_sampling``."""
    tokens = {END_TO_END: record.input_length + record.new_tokens, CONTEXT_ENCODING: record.input_length,
              TOKEN_GENERATION: record.new_tokens}
    return {part: latency_summary(record.latencies[part], tokens[part], record.batch_size, record.runs)
            for part in MODEL_PARTS}


def write_benchmark_report(report: dict[str, dict | None], path: str | Path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=4))
    except OSError as err:
        raise InputError(f"cannot write the benchmark report to {path}: {err.strerror or err}") from err
    return path


def read_benchmark_report(path: str | Path) -> dict[str, dict | None]:
    """A ``benchmark_report.json`` (NxDI's or ours): {model part: {key: float} or None}, checked."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the benchmark report {path}: {err}") from err
    if not isinstance(report, dict) or not report:
        raise InputError(f"{path} is not a benchmark report: expected an object of model parts")
    for part, summary in report.items():
        if summary is None:
            continue
        if not isinstance(summary, dict) or set(summary) != set(REPORT_KEYS):
            raise InputError(f"{path}: entry {part!r} must hold exactly {list(REPORT_KEYS)}")
        bad = [k for k, v in summary.items() if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0]
        if bad:
            raise InputError(f"{path}: entry {part!r} has non-numeric or negative {bad}")
    return report


def format_benchmark_report(report: dict[str, dict | None]) -> str:
    """A fixed-width table: one line per model part, latencies in ms, throughput in tokens/s."""
    header = f"{'model part':<24}" + "".join(f"{k.replace('latency_ms_', ''):>9}" for k in LATENCY_KEYS)
    lines = [header + f"{'tokens/s':>11}"]
    for part, summary in report.items():
        if summary is None:
            lines.append(f"{part:<24}  (not run)")
            continue
        lines.append(f"{part:<24}" + "".join(f"{summary[k]:>9.2f}" for k in LATENCY_KEYS)
                     + f"{summary['throughput']:>11.1f}")
    return "\n".join(lines)
