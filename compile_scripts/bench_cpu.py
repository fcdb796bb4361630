#!/usr/bin/env python
"""CPU benchmark: tokens/s of our runtime against transformers' ``generate`` on the same checkpoint.

Both run greedy decoding in fp32 on the same small random Qwen3.5-MoE checkpoint (built in a temp
directory) in one process, one after the other; the figure that matters is the ratio, measured in
this one run. Usage: python compile_scripts/bench_cpu.py [--new-tokens 64] [--batch 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from qwen35_neuron.cli.options import POSITIVE, CliParser, run_guarded
from qwen35_neuron.config import RunConfig
from qwen35_neuron.runtime.loading import load_engine
from qwen35_neuron.runtime.session import generate
from qwen35_neuron.testing.reference import quiet_transformers
from qwen35_neuron.testing.tiny import build_tiny_checkpoint, load_hf_text_reference, tiny_config_dict

SMALL = dict(vocab_size=1024, hidden_size=256, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
             head_dim=64, linear_num_key_heads=4, linear_num_value_heads=8, linear_key_head_dim=32,
             linear_value_head_dim=32, num_experts=32, num_experts_per_tok=4, moe_intermediate_size=128,
             shared_expert_intermediate_size=128)


def _best_of(repeats: int, fn) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=POSITIVE, default=64)
    parser.add_argument("--prompt-len", type=POSITIVE, default=32)
    parser.add_argument("--batch", type=POSITIVE, default=1)
    parser.add_argument("--repeats", type=POSITIVE, default=3, help="best of N runs for each side")
    parser.add_argument("--moe", choices=["eager", "static"], default="eager")
    parser.add_argument("--hf-experts", choices=["eager", "grouped_mm"], default="eager",
                        help="transformers' experts_implementation for its side")
    return run_guarded(lambda: run(parser.parse_args(argv)))


def run(args: argparse.Namespace) -> int:
    quiet_transformers()
    torch.manual_seed(0)
    prompts = [torch.randint(0, SMALL["vocab_size"] - 8, (args.prompt_len,)).tolist() for _ in range(args.batch)]
    with tempfile.TemporaryDirectory() as directory:
        print(f"building a small random checkpoint: {SMALL}")
        build_tiny_checkpoint(directory, tiny_config_dict(**SMALL))
        run = RunConfig(batch_size=args.batch, context_buckets=(args.prompt_len,),
                        max_seq_len=args.prompt_len + args.new_tokens, moe_impl=args.moe)
        _, engine = load_engine(directory, run)
        reference = load_hf_text_reference(directory, experts_implementation=args.hf_experts)

        def ours():
            return generate(engine, prompts, args.new_tokens, eos_token_ids=())

        def theirs():
            with torch.no_grad():
                reference.generate(torch.tensor(prompts), max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                   do_sample=False, pad_token_id=0)

        ours()  # warm-up both sides once
        theirs()
        t_ours, t_hf = _best_of(args.repeats, ours), _best_of(args.repeats, theirs)
    tokens = args.batch * args.new_tokens
    print(f"threads {torch.get_num_threads()}, batch {args.batch}, prompt {args.prompt_len}, "
          f"new tokens {args.new_tokens}, transformers experts_implementation={args.hf_experts}")
    print(f"ours:         {tokens / t_ours:8.1f} tok/s  ({t_ours:.3f} s)")
    print(f"transformers: {tokens / t_hf:8.1f} tok/s  ({t_hf:.3f} s)")
    print(f"ratio ours / transformers: {t_hf / t_ours:.2f}x  (CPU, measured in this run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
