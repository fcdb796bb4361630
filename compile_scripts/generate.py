#!/usr/bin/env python
"""Load a compiled Qwen3.5 MoE text model on Trainium2 and generate (greedy), optionally against the CPU runtime.

    python compile_scripts/generate.py --compiled /compiled/qwen35-tp4 --prompt "The capital of France is" \
        --max-new-tokens 32
    python compile_scripts/generate.py --compiled /compiled/qwen35-tp4 --input-ids 1,2,3 --input-ids 4,5 \
        --compare-cpu

The config (and the checkpoint directory, for tokenizer and shard-at-load weights) comes from
``neuron_config.json`` in the compiled directory. ``--loop adapter`` drives NxDI's
HuggingFaceGenerationAdapter (transformers' generate); ``--loop direct`` (default) our own loop,
which steps exactly like the CPU runtime, so ``--compare-cpu`` can check the tokens one to one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from qwen35_neuron.errors import InputError, Qwen35Error


def parse_ids(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError as err:
        raise InputError(f"--input-ids must be comma-separated integers, got {text!r}") from err


def tokenize(model_dir: str, prompts: list[str]):
    """The checkpoint's tokenizer (transformers AutoTokenizer), or None when there are no text prompts."""
    if not prompts:
        return None, []
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return tokenizer, [tokenizer(p)["input_ids"] for p in prompts]


def load(compiled: str):
    from qwen35_neuron.neuron import Qwen35MoeForCausalLM  # needs the SDK

    started = time.perf_counter()
    print(f"[1/2] loading {compiled} onto the NeuronCores (warm-up included)", flush=True)
    model = Qwen35MoeForCausalLM(compiled)
    model.load(compiled)
    print(f"[2/2] loaded in {time.perf_counter() - started:.0f}s", flush=True)
    return model


def cpu_reference(model_dir: str, settings, prompts: list[list[int]], max_new_tokens: int, eos: tuple[int, ...]):
    """The CPU runtime's greedy tokens for the same prompts (bf16 models: bf16 on the CPU too)."""
    from qwen35_neuron.config import RunConfig
    from qwen35_neuron.runtime.loading import load_engine
    from qwen35_neuron.runtime.session import generate

    width = max(len(p) for p in prompts)
    run = RunConfig(batch_size=len(prompts), context_buckets=(width,), max_seq_len=width + max_new_tokens,
                    dtype=settings.dtype, gdr_chunk_size=settings.gdr_chunk_size)
    return generate(load_engine(model_dir, run)[1], prompts, max_new_tokens, eos_token_ids=eos).tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--compiled", required=True, help="directory written by compile_text.py")
    parser.add_argument("--prompt", action="append", default=[], help="prompt text (repeat for a batch)")
    parser.add_argument("--input-ids", action="append", default=[], help='prompt token ids "1,2,3" (repeatable)')
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--loop", choices=["direct", "adapter"], default="direct",
                        help="direct: our greedy loop; adapter: NxDI's HuggingFaceGenerationAdapter")
    parser.add_argument("--no-eos", action="store_true", help="ignore EOS ids (always generate max tokens)")
    parser.add_argument("--compare-cpu", action="store_true",
                        help="also run the CPU runtime on the same prompts and report whether tokens agree")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    try:
        model = load(args.compiled)
        settings, text, model_dir = model.config.settings(), model.config.text(), model.config._name_or_path
        tokenizer, prompts = tokenize(model_dir, args.prompt)
        prompts += [parse_ids(t) for t in args.input_ids]
        if not prompts:
            raise InputError("give at least one --prompt or --input-ids")
        if len(prompts) > settings.batch_size:
            raise InputError(f"{len(prompts)} prompts but the model was compiled for batch {settings.batch_size}")
        eos = () if args.no_eos else tuple(text.eos_token_ids)
        from qwen35_neuron.neuron.generation import generate_direct, generate_with_adapter

        if args.loop == "adapter":
            started = time.perf_counter()
            tokens = generate_with_adapter(model, prompts, args.max_new_tokens, eos)
            timing = {"total_s": time.perf_counter() - started}
        else:
            result = generate_direct(model, prompts, args.max_new_tokens, eos)
            tokens, steps = result.tokens, result.step_s
            timing = {"ttft_s": result.ttft_s, "tpot_s": sum(steps) / len(steps) if steps else None}
        out = {"tokens": tokens, "timing": timing}
        if tokenizer is not None:
            out["text"] = [tokenizer.decode(t) for t in tokens]
        if args.compare_cpu:
            print("running the CPU reference (qwen35_neuron.runtime)...", flush=True)
            reference = cpu_reference(model_dir, settings, prompts, args.max_new_tokens, eos)
            out["cpu_tokens"], out["equal_to_cpu"] = reference, reference == tokens
    except (Qwen35Error, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out))
    else:
        for row, ids in enumerate(out["tokens"]):
            print(f"[{row}] {ids}" + (f"\n    {out['text'][row]!r}" if "text" in out else ""))
        print("timing:", {k: round(v, 4) for k, v in timing.items() if v is not None})
        if args.compare_cpu:
            print("equal to the CPU runtime:", out["equal_to_cpu"])
    return 0 if out.get("equal_to_cpu", True) else 1


if __name__ == "__main__":
    sys.exit(main())
