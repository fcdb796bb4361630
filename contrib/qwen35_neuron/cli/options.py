"""Command-line options shared by the subcommands and the scripts: one place for parsing and checking.

Everything a user types is checked here, before any model is loaded, and every mistake becomes
one ``error: ...`` line naming the flag as typed, then exit code 2:

- :class:`CliParser` is argparse with one-line errors (argparse prints usage plus an error);
- the ``type=`` factories (:func:`int_range`, :func:`finite_float`, :func:`int_list`, :data:`SEED`)
  refuse non-numbers, NaN/Inf and out-of-range values with the limits in the message;
- :func:`run_guarded` runs a command body: user errors -> one line and exit 2, a reader that
  closes the pipe early (``| head -1``) -> a quiet exit, Ctrl-C -> one line and exit 130;
- :func:`run_config_from_args` and :func:`check_run_against_model` check the flags against each other
  and against the model before the weights are read.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import secrets
import sys
from typing import Callable, Mapping, NoReturn, Sequence

from ..config import Backend, RunConfig
from ..config.hf_config import TextConfig
from ..errors import InputError, Qwen35Error

MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes 64-bit seeds
MAX_TP = 64
MAX_BATCH = 1024
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UsageError(InputError):
    """A flag argparse could not accept (unknown, missing, or refused by its ``type=``)."""


class CliParser(argparse.ArgumentParser):
    """argparse whose errors raise :class:`UsageError`, so :func:`run_guarded` prints one ``error:``
    line (exit 2) instead of usage plus a message. Subparsers made by ``add_subparsers`` inherit it."""

    def error(self, message: str) -> NoReturn:
        match = re.match(r"argument (\S+): (.*)$", message, re.S)
        if match:  # "argument --seq: must be ..." -> "--seq must be ..." (aliases kept: --tp-degree/--tp)
            flag, rest = match.groups()
            message = f"{flag} {rest}" if rest.startswith("must be") else f"{flag}: {rest}"
        raise UsageError(f"{message} (see {self.prog} --help)")


# ---- typed options (argparse ``type=``; argparse prefixes "argument --flag: ") ----

def int_range(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An integer within [minimum, maximum] (either bound optional)."""
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer{_bounds(minimum, maximum)}, got {text!r}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be{_bounds(minimum, maximum)}, got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def finite_float(minimum: float | None = None, maximum: float | None = None, *,
                 exclusive_minimum: bool = False) -> Callable[[str], float]:
    """A finite number within the bounds (NaN and +-Inf are refused)."""
    low = "" if minimum is None else (f" > {minimum:g}" if exclusive_minimum else f" >= {minimum:g}")
    high = "" if maximum is None else f" <= {maximum:g}"
    wanted = "a finite number" + (f"{low} and{high}" if low and high else low or high)

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
        too_low = minimum is not None and (value <= minimum if exclusive_minimum else value < minimum)
        if not math.isfinite(value) or too_low or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value
    parse.__name__ = "number"
    return parse


def int_list(minimum: int | None = 1, maximum: int | None = None) -> Callable[[str], tuple[int, ...]]:
    """Comma-separated integers, each within the bounds, at least one: "128,512" -> (128, 512)."""
    wanted = f"must be comma-separated integers{_bounds(minimum, maximum)} (e.g. 128,512), got {{!r}}"

    def parse(text: str) -> tuple[int, ...]:
        parts = [p.strip() for p in text.split(",")]
        try:
            values = tuple(int(p) for p in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(wanted.format(text)) from None
        if any((minimum is not None and v < minimum) or (maximum is not None and v > maximum) for v in values):
            raise argparse.ArgumentTypeError(wanted.format(text))
        return values
    parse.__name__ = "list"
    return parse


SEED = int_range(0, MAX_SEED)
POSITIVE = int_range(1)


def _bounds(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" in {minimum}..{maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    return "" if maximum is None else f" <= {maximum}"


def fresh_seed() -> int:
    """A random seed for ``--do-sample`` without ``--seed`` (printed so the run can be repeated)."""
    return secrets.randbits(63)


# ---- running a command ----

def run_guarded(body: Callable[[], int | None]) -> int:
    """Run ``body`` and turn what a user can cause into an exit code and at most one stderr line."""
    try:
        code = int(body() or 0)
        sys.stdout.flush()  # a closed pipe shows up here for short outputs
        return code
    except Qwen35Error as err:
        return _error(one_line(err))
    except BrokenPipeError:
        return _quiet_closed_stdout()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as err:  # a file the user named could not be read or written
        where = f": {err.filename}" if err.filename else ""
        return _error(f"{err.strerror or err}{where}")


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def _quiet_closed_stdout() -> int:
    """The reader of stdout went away (``| head``): stop quietly, as Python's docs advise, with
    stdout pointed at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured): nothing to redirect
        pass
    return 1


def one_line(err: Exception) -> str:
    """An error as one line. A checkpoint report (``model_dir`` set: its first line is the summary)
    points at ``inspect`` on the directory the user gave; other multi-line messages are folded
    into their first two lines."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else type(err).__name__
    model_dir = getattr(err, "model_dir", None)
    if model_dir:
        return f"{lines[0]} (full report: `qwen35-neuron inspect --model {model_dir}`)"
    return f"{lines[0]}; {lines[1]}" + (f" (and {len(lines) - 2} more lines)" if len(lines) > 2 else "")


# ---- the run options of the CPU commands ----

def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=[b.value for b in Backend if b != Backend.NXD], default="dense",
                        help="dense: one CPU rank; simulated-tp: --tp virtual ranks holding shards; "
                             "nki-sim: DeltaNet/attention through our NKI kernels in the CPU emulator")
    parser.add_argument("--tp", type=int_range(1, MAX_TP), default=None,
                        help="tensor-parallel ranks (simulated-tp; default 2)")
    parser.add_argument("--buckets", type=int_list(1), default=(16, 32, 64, 128),
                        help="context-encoding bucket lengths, comma-separated")
    parser.add_argument("--max-seq-len", type=POSITIVE, default=256, help="cache capacity per row (tokens)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--moe", choices=["eager", "static"], default="eager",
                        help="eager: experts on their routed tokens; static: traceable shapes")


def run_config_from_args(args: argparse.Namespace, batch_size: int) -> RunConfig:
    """The RunConfig the flags ask for; combinations that cannot work are errors naming the flags."""
    backend = Backend(args.backend)
    if args.tp is not None and args.tp != 1 and backend != Backend.SIMULATED_TP:
        raise InputError(f"--tp {args.tp} needs --backend simulated-tp (backend {backend.value} runs one rank)")
    tp = args.tp if args.tp is not None else (2 if backend == Backend.SIMULATED_TP else 1)
    buckets = args.buckets if isinstance(args.buckets, tuple) else int_list(1)(str(args.buckets))
    if args.max_seq_len < max(buckets):
        raise InputError(f"--max-seq-len {args.max_seq_len} is below the largest --buckets length {max(buckets)}: "
                         "raise --max-seq-len or drop that bucket")
    if batch_size > MAX_BATCH:
        raise InputError(f"{batch_size} prompts are more than the {MAX_BATCH} rows one run can hold: split them")
    return RunConfig(backend=backend, tp_degree=tp, batch_size=batch_size, context_buckets=buckets,
                     max_seq_len=args.max_seq_len, dtype=args.dtype, moe_impl=args.moe)


def check_run_against_model(run: RunConfig, text: TextConfig) -> None:
    """Checks that need the model's config.json (before any weight is read)."""
    from ..config.tp_shapes import check_tp_supported

    if run.max_seq_len > text.max_position_embeddings:
        raise InputError(f"--max-seq-len {run.max_seq_len} is beyond the model's max_position_embeddings "
                         f"{text.max_position_embeddings}: lower --max-seq-len")
    if run.backend == Backend.SIMULATED_TP:
        try:
            check_tp_supported(text, run.tp_degree)
        except Qwen35Error as err:
            raise InputError(name_flags(str(err), {"tp_degree": "--tp"})) from err


def parse_id_list(text: str) -> list[int]:
    """ "1,2,3" (spaces around the commas allowed) -> [1, 2, 3]; "" -> [] (an empty prompt, rejected
    later with its own message). "1 2 3" is an error, never the single id 123."""
    items = [item.strip() for item in text.split(",")]
    if items == [""]:
        return []
    if not all(re.fullmatch(r"[+-]?\d+", item) for item in items):
        raise InputError(f"--input-ids must be comma-separated integers, got {text!r}")
    return [int(item) for item in items]


def name_flags(message: str, flags: Mapping[str, str]) -> str:
    """A settings message with its field names (``tp_degree``) replaced by the flags that set them."""
    if not flags:
        return message
    return re.sub(r"(?<![\w-])(" + "|".join(map(re.escape, flags)) + r")(?![\w-])", lambda m: flags[m.group(1)],
                  message)
