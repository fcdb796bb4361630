#!/usr/bin/env python
"""Benchmark a compiled Qwen3.5 MoE text model on Trainium2: TTFT per context bucket, TPOT, tokens/s.

    python compile_scripts/bench_trn2.py --compiled /compiled/qwen35-tp4 --batch-sizes 1,4 --new-tokens 64

Per batch size B (at most the compiled batch) and per context bucket L: B random prompts of L
tokens; TTFT = wall time of the context-encoding call(s) (with ctx_batch_size 1, NxDI runs B of
them), TPOT = median wall time of one token-generation step for the batch, tokens/s = B / TPOT.
Times are host wall clock around NxDI's forward (input padding and output copy included), the
median of ``--repeats`` runs after ``--warmup`` runs. Beside them: the roofline lower bounds
(modelled) of the same shapes, so the gap is visible.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch

from qwen35_neuron.analysis.hardware import PRESETS
from qwen35_neuron.analysis.roofline import preset_report
from qwen35_neuron.errors import InputError, Qwen35Error


def run_case(model, batch: int, length: int, new_tokens: int, vocab: int, repeats: int, warmup: int,
             seed: int) -> dict:
    from qwen35_neuron.neuron.generation import generate_direct

    generator = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(0, vocab, (length,), generator=generator).tolist() for _ in range(batch)]
    ttft, tpot = [], []
    for run in range(warmup + repeats):
        result = generate_direct(model, prompts, new_tokens)  # no EOS: every row decodes new_tokens
        if run >= warmup:
            ttft.append(result.ttft_s)
            tpot.append(statistics.median(result.step_s))
    ttft_s, tpot_s = statistics.median(ttft), statistics.median(tpot)
    return {"batch": batch, "bucket": length, "ttft_ms": ttft_s * 1e3, "tpot_ms": tpot_s * 1e3,
            "tokens_per_s": batch / tpot_s}


def modelled(config, settings, instance: str, batch: int, length: int, context: int) -> tuple[float, float] | None:
    """(TTFT, TPOT) lower bounds in ms from the roofline, or None when it does not model these settings."""
    try:
        report = preset_report(config, None, instance, tp=settings.tp_degree, batch=batch,
                               max_seq_len=settings.max_length, decode_context=context, prefill_buckets=(length,),
                               prefill_batch=batch)
    except Qwen35Error:
        return None
    return report.ttft_lower_bound_s(length) * 1e3, report.tpot_lower_bound_s * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--compiled", required=True, help="directory written by compile_text.py")
    parser.add_argument("--batch-sizes", default="1", help="comma-separated, each <= the compiled batch size")
    parser.add_argument("--buckets", default=None, help="context lengths to time (default: the compiled buckets)")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens decoded per run (TPOT sample)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--instance", choices=sorted(PRESETS), default=None,
                        help="instance for the modelled bounds (default: trn2.3xlarge up to TP 4, else trn2.48xlarge)")
    parser.add_argument("--json", action="store_true", help="one JSON line per case")
    args = parser.parse_args(argv)
    try:
        from qwen35_neuron.neuron import Qwen35MoeForCausalLM  # needs the SDK

        print(f"loading {args.compiled} ...", flush=True)
        model = Qwen35MoeForCausalLM(args.compiled)
        model.load(args.compiled)
        settings, text = model.config.settings(), model.config.text()
        batches = [int(b) for b in args.batch_sizes.split(",")]
        buckets = [int(b) for b in args.buckets.split(",")] if args.buckets else list(settings.context_buckets)
        if args.new_tokens < 2:
            raise InputError("--new-tokens must be >= 2 (TPOT needs at least one token-generation step)")
        if max(batches) > settings.batch_size:
            raise InputError(f"batch {max(batches)} exceeds the compiled batch size {settings.batch_size}")
        if max(buckets) + args.new_tokens > settings.max_length:
            raise InputError(f"bucket {max(buckets)} + {args.new_tokens} new tokens exceed max_length "
                             f"{settings.max_length}: use fewer --new-tokens or smaller --buckets")
    except (Qwen35Error, ImportError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"TP {settings.tp_degree}, LNC {settings.lnc}, {settings.dtype}, compiled batch {settings.batch_size}, "
          f"max length {settings.max_length}; host wall clock, median of {args.repeats}", flush=True)
    header = (f"{'batch':>5} {'bucket':>6} {'TTFT ms':>9} {'TPOT ms':>9} {'tok/s':>8} "
              f"{'TTFT>= ms':>10} {'TPOT>= ms':>10}")
    if not args.json:
        print(header)
    for batch in batches:
        for length in buckets:
            case = run_case(model, batch, length, args.new_tokens, text.vocab_size, args.repeats, args.warmup,
                            args.seed)
            instance = args.instance or ("trn2.3xlarge" if settings.tp_degree <= 4 else "trn2.48xlarge")
            bounds = modelled(text, settings, instance, batch, length, length + args.new_tokens // 2)
            case["modelled_ttft_ms"], case["modelled_tpot_ms"] = bounds or (None, None)
            if args.json:
                print(json.dumps(case), flush=True)
            else:
                lb = f"{bounds[0]:>10.2f} {bounds[1]:>10.2f}" if bounds else f"{'-':>10} {'-':>10}"
                print(f"{batch:>5} {length:>6} {case['ttft_ms']:>9.2f} {case['tpot_ms']:>9.2f} "
                      f"{case['tokens_per_s']:>8.1f} {lb}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
