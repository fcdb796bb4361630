"""``qwen35-neuron bench``: time generation and write NxDI's ``benchmark_report.json``.

One case per run, as NxDI's ``inference_demo --benchmark``: ``--batch-size`` prompts of exactly
``--input-length`` tokens each decode ``--max-new-tokens`` tokens (EOS ignored, greedy),
``--num-runs`` timed runs after ``--warmup`` untimed ones. The prompts are real text when the
checkpoint has a tokenizer (a fixed passage, each row from a different place in it), else seeded
random ids that avoid the control tokens. The report (see :mod:`qwen35_neuron.runtime.benchmark`)
has NxDI's keys, so the same reader serves the CPU runtime (``--model``) and Trainium2
(``--compiled-model-path``, where the roofline's modelled lower bounds are printed beside it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from ..analysis.hardware import PRESETS
from ..analysis.roofline import preset_report
from ..config import ModelConfig, RunConfig, load_model_config
from ..config.neuron_settings import MAX_LENGTH_OPTION
from ..errors import InputError, Qwen35Error
from ..runtime.benchmark import (
    DEFAULT_REPORT_PATH,
    BenchmarkRecord,
    benchmark_report,
    format_benchmark_report,
    measure,
    write_benchmark_report,
)
from ..decoding.rows import check_capacity, check_prompt
from ..runtime.loading import load_engine
from ..runtime.session import generate
from . import neuron_app
from .options import SEED, add_run_options, check_run_against_model, run_config_from_args
from .progress import Progress, add_progress_options
from .prompts import TOKENIZER_FILES, load_tokenizer

NAME = "bench"
HELP = "time generation on the CPU (--model) or Trainium2 (--compiled-model-path); write NxDI's benchmark_report.json"

# A passage of our own for text prompts: plain prose, so the tokenizer sees ordinary words.
PASSAGE = (
    "The river started as a thin line of melt water high in the hills, ran over stones worn smooth by "
    "a thousand winters, and widened as it met the streams that came down from the forest. By the time it "
    "reached the town it carried boats, timber and the news of every village it had passed. People on the "
    "bridge watched it in the evening, counted the barges, argued about the weather and the price of grain, "
    "and then went home while the lamps came on along the quay, one after another, until the water held a "
    "second row of lights that shook whenever the wind moved across it. "
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", "--model-path", dest="model", metavar="DIR", help="checkpoint directory: time the CPU runtime")
    source.add_argument("--compiled-model-path", "--compiled", dest="compiled", metavar="DIR",
                        help="directory written by `qwen35-neuron compile`: time it on Trainium2 (needs the SDK)")
    parser.add_argument("--batch-size", type=int, default=1, help="prompts decoded together")
    parser.add_argument("--input-length", type=int, default=None,
                        help="tokens per prompt (default: the largest context bucket)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="tokens decoded per prompt (EOS ignored)")
    parser.add_argument("--num-runs", type=int, default=20, help="timed runs (NxDI's default: 20)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--seed", type=SEED, default=0, help="seed of the random prompts (checkpoints without tokenizer)")
    parser.add_argument("--benchmark-report-path", default=DEFAULT_REPORT_PATH,
                        help=f"where the report goes (default {DEFAULT_REPORT_PATH}, as NxDI)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout instead of a table")
    parser.add_argument("--instance", choices=sorted(PRESETS), default=None,
                        help="trn2 instance of the modelled bounds (default: by TP)")
    cpu = parser.add_argument_group("CPU runtime (with --model)")
    add_run_options(cpu)
    add_progress_options(parser)


def run(args: argparse.Namespace) -> int:
    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--max-new-tokens", args.max_new_tokens, 1),
                             ("--num-runs", args.num_runs, 1), ("--warmup", args.warmup, 0),
                             ("--input-length", args.input_length, 1)):
        if value is not None and value < low:
            raise InputError(f"{flag} must be >= {low}, got {value}")
    progress = Progress.from_args(args)
    if args.compiled:
        record, setup, bounds = _bench_neuron(args, progress)
    else:
        record, setup, bounds = _bench_cpu(args, progress)
    report = benchmark_report(record)
    path = write_benchmark_report(report, args.benchmark_report_path)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{setup}; batch {record.batch_size}, input {record.input_length} tokens, {record.new_tokens} new tokens, "
          f"{record.runs} runs after {args.warmup} warm-up; host wall clock")
    print(format_benchmark_report(report))
    if bounds is not None:
        print(f"modelled lower bounds (roofline, not measured): context encoding >= {bounds[0]:.2f} ms, "
              f"token generation >= {bounds[1]:.2f} ms per step")
    print(f"wrote {path}")
    return 0


def benchmark_prompts(config: ModelConfig, batch: int, length: int, tokenizer: Any = None,
                      seed: int = 0) -> list[list[int]]:
    """``batch`` prompts of exactly ``length`` tokens: the passage (each row from its own offset) when
    there is a tokenizer, else seeded random ids outside the EOS and vision control tokens."""
    if tokenizer is not None:
        passage = [int(t) for t in tokenizer.encode(PASSAGE, add_special_tokens=False)]
        stream = passage * (-(-(length + 7 * batch) // len(passage)))
        return [stream[7 * row: 7 * row + length] for row in range(batch)]
    control = set(config.text.eos_token_ids)
    if config.vision is not None:
        control |= {config.image_token_id, config.video_token_id, config.vision_start_token_id,
                    config.vision_end_token_id}
    allowed = torch.tensor([t for t in range(config.text.vocab_size) if t not in control])
    generator = torch.Generator().manual_seed(seed)
    return [allowed[torch.randint(len(allowed), (length,), generator=generator)].tolist() for _ in range(batch)]


def _tokenizer_or_none(model_dir: str):
    has_tokenizer = any((Path(model_dir) / name).is_file() for name in TOKENIZER_FILES)
    return load_tokenizer(model_dir) if has_tokenizer else None


def _bench_cpu(args: argparse.Namespace, progress: Progress) -> tuple[BenchmarkRecord, str, None]:
    config = load_model_config(args.model)
    run_config: RunConfig = run_config_from_args(args, batch_size=args.batch_size)
    length = args.input_length or run_config.context_buckets[-1]
    check_run_against_model(run_config, config.text)
    prompts = benchmark_prompts(config, args.batch_size, length, _tokenizer_or_none(args.model), args.seed)
    for prompt in prompts:
        check_prompt(prompt, config.text, run_config, args.max_new_tokens)
    with progress.stage(f"loading {args.model} ({run_config.backend.value}, TP {run_config.tp_degree}, "
                        f"{run_config.dtype})"):
        _, engine = load_engine(args.model, run_config, progress.bytes("reading the weights"))
    record = BenchmarkRecord(args.batch_size, length, args.max_new_tokens)
    with progress.stage(f"{args.warmup} warm-up + {args.num_runs} timed runs"):
        measure(lambda timed: generate(timed, prompts, args.max_new_tokens, eos_token_ids=()), engine, record,
                args.num_runs, args.warmup, on_run=lambda n: progress.say(f"run {n} of {args.num_runs}"))
    setup = f"CPU runtime: {run_config.backend.value}, TP {run_config.tp_degree}, {run_config.dtype}, {torch.get_num_threads()} threads"
    return record, setup, None


def _bench_neuron(args: argparse.Namespace, progress: Progress) -> tuple[BenchmarkRecord, str, tuple | None]:
    model = neuron_app.load_compiled(args.compiled, progress)
    settings = model.config.settings()
    model_dir = neuron_app.checkpoint_dir(model)
    config = load_model_config(model_dir)
    length = args.input_length or settings.max_context_length
    if args.batch_size > settings.batch_size:
        raise InputError(f"--batch-size {args.batch_size} exceeds the compiled batch size {settings.batch_size}")
    check_capacity(length, args.max_new_tokens, settings.max_length, MAX_LENGTH_OPTION)
    prompts = benchmark_prompts(config, args.batch_size, length, _tokenizer_or_none(model_dir), args.seed)
    record = BenchmarkRecord(args.batch_size, length, args.max_new_tokens)
    from ..neuron.generation import generate_direct  # the SDK is loaded by now

    with progress.stage(f"{args.warmup} warm-up + {args.num_runs} timed runs"):
        measure(lambda timed: generate_direct(timed, prompts, args.max_new_tokens), model, record, args.num_runs,
                args.warmup, on_run=lambda n: progress.say(f"run {n} of {args.num_runs}"))
    setup = f"Trainium2: TP {settings.tp_degree}, LNC {settings.lnc}, {settings.dtype}, compiled batch {settings.batch_size}"
    return record, setup, _modelled_bounds(config, settings, args, length)


def _modelled_bounds(config: ModelConfig, settings, args: argparse.Namespace, length: int) -> tuple | None:
    """(context encoding, token-generation step) lower bounds in ms from the roofline, or None."""
    instance = args.instance or ("trn2.3xlarge" if settings.tp_degree <= 4 else "trn2.48xlarge")
    try:
        report = preset_report(config.text, None, instance, tp=settings.tp_degree, batch=args.batch_size,
                               max_seq_len=settings.max_length, decode_context=length + args.max_new_tokens // 2,
                               prefill_buckets=(length,), prefill_batch=args.batch_size)
    except Qwen35Error:
        return None
    return report.ttft_lower_bound_s(length) * 1e3, report.tpot_lower_bound_s * 1e3
