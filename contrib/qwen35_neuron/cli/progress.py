"""Progress lines on stderr for long work: loading, compiling, generating, benchmarking.

Git's convention: progress is shown when stderr is a terminal; ``--progress`` forces it (a log
file of a long compile), ``--quiet`` turns it off. It never goes to stdout, so ``--json`` output
stays clean. Each line carries the seconds since the command started.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TextIO

from ..runtime.benchmark import CONTEXT_ENCODING


def add_progress_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    group.add_argument("--progress", action="store_true",
                       help="progress lines on stderr even when it is not a terminal (e.g. a log file)")


class Progress:
    def __init__(self, enabled: bool, stream: TextIO | None = None, clock: Callable[[], float] = time.perf_counter,
                 interval_s: float = 5.0) -> None:
        self.enabled, self.stream, self.clock, self.interval_s = enabled, stream, clock, interval_s
        self.started = clock()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Progress":
        if getattr(args, "quiet", False):
            return cls(False)
        forced = getattr(args, "progress", False)
        return cls(forced or sys.stderr.isatty())

    def say(self, message: str) -> None:
        if self.enabled:
            stream = self.stream or sys.stderr
            print(f"[{self.clock() - self.started:7.1f}s] {message}", file=stream, flush=True)

    @contextmanager
    def stage(self, message: str) -> Iterator[None]:
        """``message ...`` before the work, ``message: done in S s`` after it (nothing on failure)."""
        self.say(f"{message} ...")
        start = self.clock()
        yield
        self.say(f"{message}: done in {self.clock() - start:.1f}s")

    def bytes(self, what: str) -> Callable[[int, int], None]:
        """A (bytes done, bytes in all) listener for reading or scanning a checkpoint: a line every
        ``interval_s`` seconds and one at the end."""
        state = {"last": self.clock()}

        def listener(done: int, total: int) -> None:
            if done >= total or self.clock() - state["last"] >= self.interval_s:
                state["last"] = self.clock()
                self.say(f"{what}: {_size(done)} of {_size(total)} ({100 * done / max(total, 1):.0f}%)")

        return listener

    def generation(self, rows: int, max_new_tokens: int) -> Callable[[str, float], None]:
        """A :class:`~qwen35_neuron.runtime.benchmark.PhaseTimer` listener: one line per prefill call
        (a prompt longer than the largest bucket takes several), then one every ``interval_s`` seconds
        of decoding."""
        state = {"steps": 0, "decode_s": 0.0, "last": self.clock(), "prefill_calls": 0}

        def listener(phase: str, seconds: float) -> None:
            if phase == CONTEXT_ENCODING:
                state["prefill_calls"] += 1
                calls = state["prefill_calls"]
                where = f"prefill of {rows} prompt(s)" if calls == 1 else f"prefill continues (call {calls})"
                self.say(f"{where}: {seconds * 1e3:.0f} ms")
                return
            state["steps"] += 1
            state["decode_s"] += seconds
            if self.clock() - state["last"] >= self.interval_s:
                state["last"] = self.clock()
                self.say(f"decoding: token {state['steps'] + 1} of up to {max_new_tokens} per row, "
                         f"{state['steps'] / state['decode_s']:.1f} steps/s")

        return listener


def _size(count: int) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"
