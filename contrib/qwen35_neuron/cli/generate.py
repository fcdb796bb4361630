"""``qwen35-neuron generate``: run a checkpoint on the CPU runtime for one prompt or a batch.

With ``--image`` (a vision-language checkpoint), each image placeholder of the prompts (one
``image_token_id`` in ``--input-ids``, or the literal ``<|image_pad|>`` in ``--prompt``) takes the
next image, in order across the prompts, and is expanded to that image's token count.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..config import ModelConfig, RunConfig, load_model_config
from ..errors import InputError
from ..runtime.loading import load_engine
from ..runtime.sampling import SamplingParams
from ..runtime.session import GenerationResult, generate
from ..vision.preprocess import load_image_processor_config
from ..vl import (
    VLRequest,
    assign_images_in_order,
    count_placeholders,
    encode_with_placeholders,
    generate_vl,
    load_vl_session,
)
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
    parser.add_argument("--image", action="append", default=[],
                        help="image file for the next image placeholder (image_token_id in --input-ids, "
                             "<|image_pad|> in --prompt); repeat, in placeholder order across prompts")
    parser.add_argument("--vision-buckets", default=None,
                        help="vision tower patch-count buckets, e.g. 1024,4096,16384 (default: RunConfig's)")
    parser.add_argument("--min-pixels", type=int, default=None, help="override the image processor's min_pixels")
    parser.add_argument("--max-pixels", type=int, default=None, help="override the image processor's max_pixels")
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
    sampling = SamplingParams(do_sample=args.do_sample, temperature=args.temperature, top_k=args.top_k,
                              top_p=args.top_p, seed=args.seed)
    config = load_model_config(args.model)
    if config.vision is not None:  # a VL checkpoint: <|image_pad|> in text is one placeholder token
        prompts = ([encode_with_placeholders(tokenizer, text, config.image_token_id) for text in args.prompt]
                   if tokenizer else [parse_id_list(text) for text in args.input_ids])
    else:
        prompts = ([tokenizer.encode(text) for text in args.prompt] if tokenizer
                   else [parse_id_list(text) for text in args.input_ids])
    run_config = _with_vision_buckets(run_config_from_args(args, batch_size=len(prompts)), args.vision_buckets)
    has_placeholders = config.vision is not None and any(count_placeholders(p, config.image_token_id) for p in prompts)
    if args.image or has_placeholders:
        result = _generate_with_images(args, config, run_config, prompts, sampling)
    else:
        _, engine = load_engine(args.model, run_config)
        result = generate(engine, prompts, args.max_new_tokens, sampling)
    if args.json:
        print(json.dumps({"tokens": result.tokens}))
        return 0
    for i, tokens in enumerate(result.tokens):
        text = f"  {tokenizer.decode(tokens, skip_special_tokens=True)!r}" if tokenizer else ""
        print(f"[{i}] {tokens}{text}")
    return 0


def _with_vision_buckets(run_config: RunConfig, text: str | None) -> RunConfig:
    if text is None:
        return run_config
    try:
        buckets = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError as err:
        raise InputError(f"--vision-buckets must be comma-separated integers, got {text!r}") from err
    return dataclasses.replace(run_config, vision_buckets=buckets)


def _generate_with_images(args: argparse.Namespace, config: ModelConfig, run_config: RunConfig,
                          prompts: list[list[int]], sampling: SamplingParams) -> GenerationResult:
    """Images go to the placeholders in order across prompts; every check runs before generation."""
    if config.vision is None:
        raise InputError(f"--image needs a vision-language checkpoint, but {args.model} has no vision_config")
    per_row = assign_images_in_order(prompts, list(args.image), config.image_token_id)
    processor = load_image_processor_config(args.model, config.vision).with_pixel_limits(args.min_pixels,
                                                                                       args.max_pixels)
    _, session = load_vl_session(args.model, run_config, sampling=sampling, processor=processor)
    requests = [VLRequest(prompt, images) for prompt, images in zip(prompts, per_row)]
    return generate_vl(session, requests, args.max_new_tokens)
