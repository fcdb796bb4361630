#!/usr/bin/env python
"""CPU benchmark: prefill tokens/s against prompt length, 1x to 8x the largest context bucket.

A prompt past the largest bucket runs as consecutive CTE calls of that bucket, each continuing
from the carried state. A DeltaNet layer carries a fixed-size state, so its cost per token must not
grow with the prompt (linear total cost); the per-layer figures come from timing every DeltaNet and
attention layer's token mixer with forward hooks. Costs are the process's CPU time on one thread,
so other jobs on a shared machine do not inflate them (wall time is printed beside). One small
random checkpoint, fp32, batch 1; the cache holds the longest prompt, so every call's attention
reads the same cache buffer. The figures that matter are the ratios, measured in this one run.
Usage: python compile_scripts/bench_long_prefill.py (no arguments).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict

import torch

from qwen35_neuron.config import RunConfig
from qwen35_neuron.decoding.buckets import plan_chunks
from qwen35_neuron.runtime.loading import load_engine
from qwen35_neuron.runtime.session import GenerationSession
from qwen35_neuron.testing.tiny import build_tiny_checkpoint, tiny_config_dict

SMALL = dict(vocab_size=1024, hidden_size=256, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
             head_dim=64, linear_num_key_heads=4, linear_num_value_heads=8, linear_key_head_dim=32,
             linear_value_head_dim=32, num_experts=32, num_experts_per_tok=4, moe_intermediate_size=128,
             shared_expert_intermediate_size=128)
BUCKETS = (128, 256)
MULTIPLES = (1, 2, 4, 8)
REPEATS = 3  # best of N per length


class MixerTimer:
    """CPU time spent in the token mixers of each kind (DeltaNet, attention) through forward hooks."""

    def __init__(self, model) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.layers: dict[str, int] = defaultdict(int)
        for layer in model.layers:
            kind, module = ("DeltaNet", layer.linear_attn) if layer.is_linear else ("attention", layer.self_attn)
            self.layers[kind] += 1
            module.register_forward_pre_hook(self._start)
            module.register_forward_hook(lambda *_, kind=kind: self._stop(kind))
        self._started = 0.0

    def _start(self, *_) -> None:
        self._started = time.process_time()

    def _stop(self, kind: str) -> None:
        self.seconds[kind] += time.process_time() - self._started

    def reset(self) -> None:
        self.seconds.clear()


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    largest = max(BUCKETS)
    longest = largest * max(MULTIPLES)
    with tempfile.TemporaryDirectory() as directory:
        print(f"building a small random checkpoint: {SMALL}")
        build_tiny_checkpoint(directory, tiny_config_dict(**SMALL))
        run = RunConfig(batch_size=1, context_buckets=BUCKETS, max_seq_len=longest, gdr_chunk_size=64)
        _, engine = load_engine(directory, run)
        timer = MixerTimer(engine.models[0])
        session = GenerationSession(engine)
        session.prefill([torch.randint(0, 1000, (largest,)).tolist()])  # warm-up
        results = []
        for multiple in MULTIPLES:
            prompt = torch.randint(0, 1000, (largest * multiple,)).tolist()
            best = None
            for _ in range(REPEATS):
                timer.reset()
                wall, cpu = time.perf_counter(), time.process_time()
                session.prefill([prompt])
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                if best is None or cpu < best[0]:
                    best = (cpu, wall, dict(timer.seconds))
            results.append((multiple, len(prompt), *best))
    print(f"1 thread, buckets {BUCKETS}, max_seq_len {longest}, batch 1, fp32, best of {REPEATS} by CPU time; "
          f"layers: {timer.layers['DeltaNet']} DeltaNet, {timer.layers['attention']} attention")
    print()
    print("| prompt | x largest bucket | CTE calls | CPU s | tokens/s (CPU) | wall s | us/token | "
          "DeltaNet us/token/layer | attention us/token/layer |")
    print("|---|---|---|---|---|---|---|---|---|")
    per_token = {}
    for multiple, length, cpu, wall, mixers in results:
        delta = mixers["DeltaNet"] / length / timer.layers["DeltaNet"] * 1e6
        attn = mixers["attention"] / length / timer.layers["attention"] * 1e6
        per_token[multiple] = (cpu / length * 1e6, delta, attn)
        print(f"| {length} | {multiple}x | {len(plan_chunks(length, BUCKETS))} | {cpu:.3f} | {length / cpu:.0f} "
              f"| {wall:.3f} | {cpu / length * 1e6:.1f} | {delta:.1f} | {attn:.1f} |")
    first, last = per_token[MULTIPLES[0]], per_token[MULTIPLES[-1]]
    print()
    print(f"per-token cost, {MULTIPLES[-1]}x over {MULTIPLES[0]}x the largest bucket (1.0 = linear total cost, "
          f"{MULTIPLES[-1] / MULTIPLES[0]:.0f} = quadratic): whole prefill {last[0] / first[0]:.2f}, DeltaNet layers "
          f"{last[1] / first[1]:.2f}, attention layers {last[2] / first[2]:.2f}  (CPU, measured in this run)")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print("error: bench_long_prefill.py takes no arguments", file=sys.stderr)
        sys.exit(2)
    main()
