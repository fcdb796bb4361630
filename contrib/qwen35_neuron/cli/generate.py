"""``qwen35-neuron generate``: run a checkpoint on the CPU runtime for one prompt or a batch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError
from ..runtime.loading import load_engine
from ..runtime.sampling import SamplingParams
from ..runtime.session import generate
from .options import add_run_options, parse_id_list, run_config_from_args

NAME = "generate"
HELP = "generate tokens from a Hugging Face Qwen3.5 checkpoint directory on the CPU"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint directory (config.json + safetensors)")
    parser.add_argument("--input-ids", action="append", default=[],
                        help='prompt token ids, e.g. "1,2,3"; repeat for a batch')
    parser.add_argument("--prompt", action="append", default=[],
                        help="prompt text (needs a tokenizer in --model); repeat for a batch")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help='print {"tokens": [[...], ...]}')
    add_run_options(parser)


def _tokenizer(model_dir: str):
    if not any((Path(model_dir) / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise InputError(f"--prompt needs a tokenizer, but {model_dir} has no tokenizer.json: use --input-ids")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir, local_files_only=True)


def run(args: argparse.Namespace) -> int:
    if bool(args.input_ids) == bool(args.prompt):
        raise InputError("give either --input-ids or --prompt (one or more times), not both and not neither")
    tokenizer = _tokenizer(args.model) if args.prompt else None
    prompts = ([tokenizer.encode(text) for text in args.prompt] if tokenizer
               else [parse_id_list(text) for text in args.input_ids])
    sampling = SamplingParams(do_sample=args.do_sample, temperature=args.temperature, top_k=args.top_k,
                              top_p=args.top_p, seed=args.seed)
    _, engine = load_engine(args.model, run_config_from_args(args, batch_size=len(prompts)))
    result = generate(engine, prompts, args.max_new_tokens, sampling)
    if args.json:
        print(json.dumps({"tokens": result.tokens}))
        return 0
    for i, tokens in enumerate(result.tokens):
        text = f"  {tokenizer.decode(tokens, skip_special_tokens=True)!r}" if tokenizer else ""
        print(f"[{i}] {tokens}{text}")
    return 0
