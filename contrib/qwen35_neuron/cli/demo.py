"""``qwen35-neuron demo``: a tiny random Qwen3.5-MoE checkpoint, our model against transformers.

Builds the checkpoint (real config.json + safetensors) in a temporary directory, generates greedily
with our runtime and with ``Qwen3_5MoeForConditionalGeneration.generate``, and prints both token
lists, whether they match, the largest logit difference and the time each took. Exit 0 only when
every row's tokens match.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from ..config import RunConfig
from ..runtime.loading import load_engine
from ..runtime.session import generate
from ..testing.reference import hf_greedy, quiet_transformers
from ..testing.tiny import build_tiny_checkpoint, load_hf_reference, tiny_config_dict
from .options import run_config_from_args

NAME = "demo"
HELP = "build a tiny random checkpoint, run our model and transformers on it, compare (no arguments needed)"
DEMO_PROMPTS = ([11, 42, 7, 99, 3], [5, 200, 17, 64, 128, 31, 9, 77, 150, 2, 88])
DEMO_NEW_TOKENS = 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["dense", "simulated-tp", "nki-sim"], default="dense",
                        help="which of our CPU backends to compare with transformers")
    parser.add_argument("--tp", type=int, default=None, help="ranks for --backend simulated-tp (default 2)")
    parser.add_argument("--head-dim", type=int, default=32, help="attention head_dim of the tiny model (e.g. 256)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    quiet_transformers()
    defaults = argparse.Namespace(buckets="16,32", max_seq_len=64, dtype="float32", moe="eager")
    run_config: RunConfig = run_config_from_args(argparse.Namespace(**vars(defaults), **vars(args)),
                                                 batch_size=len(DEMO_PROMPTS))
    with tempfile.TemporaryDirectory(prefix="qwen35-demo-") as directory:
        print(f"building a tiny random Qwen3.5-MoE checkpoint in {directory} (head_dim {args.head_dim}) ...")
        build_tiny_checkpoint(directory, tiny_config_dict(head_dim=args.head_dim), seed=args.seed)
        config, engine = load_engine(directory, run_config)
        eos = config.text.eos_token_ids

        start = time.perf_counter()
        ours = generate(engine, [list(p) for p in DEMO_PROMPTS], DEMO_NEW_TOKENS, eos_token_ids=eos)
        ours_seconds = time.perf_counter() - start

        reference = load_hf_reference(directory)
        start = time.perf_counter()
        theirs = [hf_greedy(reference, list(p), DEMO_NEW_TOKENS, eos) for p in DEMO_PROMPTS]
        hf_seconds = time.perf_counter() - start

    all_match, max_diff = True, 0.0
    for row, (prompt, (hf_tokens, hf_logits)) in enumerate(zip(DEMO_PROMPTS, theirs)):
        match = ours.tokens[row] == hf_tokens
        steps = min(len(ours.logits[row]), hf_logits.shape[0])
        diff = (torch.stack(ours.logits[row][:steps]) - hf_logits[:steps]).abs().max().item() if steps else 0.0
        all_match, max_diff = all_match and match, max(max_diff, diff)
        print(f"prompt {row} {list(prompt)}")
        print(f"  ours ({run_config.backend.value}, tp {run_config.tp_degree}): {ours.tokens[row]}")
        print(f"  transformers:          {hf_tokens}")
        print(f"  match: {match}  max |logit diff|: {diff:.2e}")
    print(f"time: ours {ours_seconds:.2f} s, transformers {hf_seconds:.2f} s")
    print("RESULT: tokens match" if all_match else "RESULT: MISMATCH")
    return 0 if all_match else 1
