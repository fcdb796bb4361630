#!/usr/bin/env python
"""CPU benchmark of MTP speculative decoding: tokens per verify step and speed-up against plain greedy.

A small Qwen3.5 checkpoint (MoE by default, ``--dense`` for the dense family) whose MTP head is built
to draft well (:mod:`qwen35_neuron.testing.drafting`; ``--mix-scale`` sets how often the context
overrides the drafted rule, i.e. the acceptance) runs plain greedy decoding and speculative decoding
with K = 1..3 drafts in one process, one after the other; outputs are checked equal token for token.
The figures that matter are the ratios, measured in this one run.
Usage: python compile_scripts/bench_speculative.py [--new-tokens 64] [--batch 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from qwen35_neuron.cli.options import POSITIVE, CliParser, finite_float, run_guarded
from qwen35_neuron.config import RunConfig
from qwen35_neuron.runtime.session import generate
from qwen35_neuron.decoding.acceptance import MAX_SPECULATIVE_TOKENS
from qwen35_neuron.runtime.speculative import generate_speculative, load_speculative_engine
from qwen35_neuron.testing.drafting import build_drafting_checkpoint
from qwen35_neuron.testing.tiny import tiny_config_dict

SMALL = dict(vocab_size=1024, hidden_size=256, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
             head_dim=64, linear_num_key_heads=4, linear_num_value_heads=8, linear_key_head_dim=32,
             linear_value_head_dim=32)
SMALL_MOE = dict(num_experts=32, num_experts_per_tok=4, moe_intermediate_size=128, shared_expert_intermediate_size=128)
SMALL_DENSE = dict(intermediate_size=768)


def _best_of(repeats: int, fn):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=POSITIVE, default=64)
    parser.add_argument("--prompt-len", type=POSITIVE, default=32)
    parser.add_argument("--batch", type=POSITIVE, default=1)
    parser.add_argument("--repeats", type=POSITIVE, default=3, help="best of N runs for each setting")
    parser.add_argument("--dense", action="store_true", help="the dense qwen3_5 family instead of MoE")
    parser.add_argument("--mix-scale", type=finite_float(0.0), default=0.2,
                        help="weight of the context-dependent layers (smaller: the MTP head's drafts hold more often)")
    parser.add_argument("--moe", choices=["eager", "static"], default="eager")
    return run_guarded(lambda: run(parser.parse_args(argv)))


def run(args: argparse.Namespace) -> int:
    torch.manual_seed(0)
    config = {**SMALL, **(SMALL_DENSE if args.dense else SMALL_MOE)}
    prompts = [torch.randint(0, SMALL["vocab_size"] - 8, (args.prompt_len,)).tolist() for _ in range(args.batch)]
    with tempfile.TemporaryDirectory() as directory:
        print(f"building a small {'dense' if args.dense else 'MoE'} checkpoint whose MTP head drafts well "
              f"(mix scale {args.mix_scale}): {config}")
        build_drafting_checkpoint(directory, tiny_config_dict(dense=args.dense, **config), mix_scale=args.mix_scale)
        run = RunConfig(batch_size=args.batch, context_buckets=(args.prompt_len,),
                        max_seq_len=args.prompt_len + args.new_tokens + MAX_SPECULATIVE_TOKENS, moe_impl=args.moe)
        _, spec = load_speculative_engine(directory, run)

        def plain():
            return generate(spec.engine, prompts, args.new_tokens, eos_token_ids=())

        plain()  # warm-up
        t_plain, reference = _best_of(args.repeats, plain)
        rows = []
        for drafts in range(1, MAX_SPECULATIVE_TOKENS + 1):
            def speculative(k=drafts):
                return generate_speculative(spec, prompts, args.new_tokens, k, eos_token_ids=())
            t_spec, result = _best_of(args.repeats, speculative)
            if result.tokens != reference.tokens:
                raise SystemExit(f"K={drafts}: speculative tokens differ from plain greedy decoding")
            rows.append((drafts, t_spec, result.acceptance))
    tokens = args.batch * args.new_tokens
    print(f"threads {torch.get_num_threads()}, batch {args.batch}, prompt {args.prompt_len}, new tokens "
          f"{args.new_tokens}; every speculative run equals plain greedy token for token")
    print(f"plain greedy:  {tokens / t_plain:8.1f} tok/s  ({t_plain:.3f} s)")
    for drafts, t_spec, stats in rows:
        rates = " ".join(f"{r:.2f}" for r in stats.rate_by_depth)
        print(f"MTP K={drafts}:       {tokens / t_spec:8.1f} tok/s  ({t_spec:.3f} s)  "
              f"{stats.tokens_per_step:.2f} tokens per verify step, acceptance by depth [{rates}], "
              f"speed-up {t_plain / t_spec:.2f}x")
    best = max(rows, key=lambda row: t_plain / row[1])
    print(f"best speed-up over plain greedy: {t_plain / best[1]:.2f}x at K={best[0]} "
          f"({best[2].tokens_per_step:.2f} tokens per verify step; CPU, measured in this run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
