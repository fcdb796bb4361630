"""``qwen35-neuron generate``: a checkpoint on the CPU runtime (``--model``), or a compiled model on
Trainium2 (``--compiled-model-path``), for one prompt or a batch.

Prompts are token ids, raw text, or ``--chat`` messages through the model's chat template (see
:mod:`.prompts`). With ``--image`` (a vision-language checkpoint) each image placeholder (one
``image_token_id`` in ``--input-ids``, the literal ``<|image_pad|>`` in raw ``--prompt`` text, or the
template's image tokens with ``--chat``) takes the next image, in order across the prompts, and is
expanded to that image's token count.

On Trainium2 the checkpoint (tokenizer, config) is the one named in the compiled directory's
``neuron_config.json``; decoding is greedy: ``--loop direct`` (default) steps exactly like the CPU
runtime, so ``--compare-cpu`` checks the tokens one to one; ``--loop adapter`` drives NxDI's
HuggingFaceGenerationAdapter (text only). Images run their vision tower from ``--vision-compiled``
(towers compiled by compile_scripts/compile_vision.py) or on the CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from ..config import ModelConfig, RunConfig, load_model_config
from ..decoding.rows import GenerationResult, check_prompt
from ..errors import InputError
from ..runtime.benchmark import PhaseTimer
from ..runtime.loading import load_engine
from ..runtime.sampling import SamplingParams
from ..runtime.session import generate
from ..decoding.acceptance import check_num_drafts
from ..runtime.speculative import generate_speculative, load_speculative_engine
from ..runtime.vl_session import load_vl_session
from ..vision.preprocess import load_image_processor_config
from ..vl import VLRequest, assign_images_in_order, count_placeholders, generate_vl
from . import neuron_app
from .options import (
    POSITIVE,
    SEED,
    add_run_options,
    check_run_against_model,
    finite_float,
    fresh_seed,
    int_list,
    int_range,
    run_config_from_args,
)
from .progress import Progress, add_progress_options
from .prompts import add_prompt_options, check_prompt_options, decode_replies, load_tokenizer, prompt_ids

NAME = "generate"
HELP = "generate tokens on the CPU (--model DIR) or on Trainium2 (--compiled-model-path DIR)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", "--model-path", dest="model", metavar="DIR",
                        help="checkpoint directory (config.json + safetensors): run on the CPU runtime")
    source.add_argument("--compiled-model-path", "--compiled", dest="compiled", metavar="DIR",
                        help="directory written by `qwen35-neuron compile`: run on Trainium2 (needs the Neuron SDK)")
    add_prompt_options(parser)
    parser.add_argument("--max-new-tokens", type=POSITIVE, default=16)
    parser.add_argument("--no-eos", action="store_true", help="ignore EOS ids (always generate --max-new-tokens)")
    parser.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding (CPU)")
    parser.add_argument("--temperature", type=finite_float(0.0, exclusive_minimum=True), default=1.0,
                        help="sampling temperature, > 0")
    parser.add_argument("--top-k", type=int_range(0), default=0, help="keep the k most likely tokens (0: all)")
    parser.add_argument("--top-p", type=finite_float(0.0, 1.0, exclusive_minimum=True), default=1.0,
                        help="nucleus sampling mass, in (0, 1]")
    parser.add_argument("--seed", type=SEED, default=None,
                        help="sampling seed, 0..2^64-1 (default with --do-sample: a fresh one, printed; "
                             "\"seed\" in --json)")
    parser.add_argument("--json", action="store_true", help='print {"tokens": [[...], ...]} (stdout holds only this; '
                                                            'with --speculate also "speculative": acceptance)')
    parser.add_argument("--speculate", choices=["mtp"], default=None,
                        help="speculative decoding (CPU): the checkpoint's MTP head drafts, one verify step checks "
                             "(greedy; output equal to plain decoding)")
    parser.add_argument("--num-speculative-tokens", type=int, default=None,
                        help="drafts per verify step with --speculate mtp, 1..3 (default 2)")
    parser.add_argument("--image", action="append", default=[],
                        help="image file for the next image placeholder (image_token_id in --input-ids, "
                             "<|image_pad|> in --prompt, an image part with --chat); repeat, in order")
    parser.add_argument("--vision-buckets", type=int_list(1), default=None,
                        help="vision tower patch-count buckets, e.g. 1024,4096,16384 (default: RunConfig's)")
    parser.add_argument("--min-pixels", type=POSITIVE, default=None, help="override the image processor's min_pixels")
    parser.add_argument("--max-pixels", type=POSITIVE, default=None, help="override the image processor's max_pixels")
    add_run_options(parser)
    trn2 = parser.add_argument_group("Trainium2 (with --compiled-model-path)")
    trn2.add_argument("--loop", choices=["direct", "adapter"], default=None,
                      help="direct (default): our greedy loop; adapter: NxDI's HuggingFaceGenerationAdapter "
                           "(text only)")
    trn2.add_argument("--compare-cpu", action="store_true",
                      help="also run the CPU runtime on the same prompts; exit 1 when the tokens differ")
    trn2.add_argument("--vision-compiled", default=None,
                      help="directory of compiled vision towers (default: the tower runs on the CPU)")
    add_progress_options(parser)


def run(args: argparse.Namespace) -> int:
    check_prompt_options(args)
    progress = Progress.from_args(args)
    if args.compiled:
        if args.speculate or args.num_speculative_tokens is not None:
            raise InputError("--speculate runs on the CPU runtime (--model DIR); on Trainium2 use "
                             "qwen35_neuron.neuron.speculation")
        return _run_on_neuron(args, progress)
    _refuse_trn2_flags(args)
    config = load_model_config(args.model)
    _check_images_fit(args, config)
    tokenizer = load_tokenizer(args.model, "--chat" if args.chat else "--prompt") if args.prompt else None
    prompts = prompt_ids(args, config, tokenizer, images=len(args.image))
    run_config = run_config_from_args(args, batch_size=len(prompts))
    if args.vision_buckets is not None:
        run_config = dataclasses.replace(run_config, vision_buckets=args.vision_buckets)
    check_run_against_model(run_config, config.text)
    eos = () if args.no_eos else None
    seed = args.seed if args.seed is not None else (fresh_seed() if args.do_sample else 0)
    sampling = SamplingParams(do_sample=args.do_sample, temperature=args.temperature, top_k=args.top_k,
                              top_p=args.top_p, seed=seed)
    has_images = bool(args.image) or _has_placeholders(config, prompts)
    speculative = _speculative_tokens(args, has_images)
    if has_images:
        result = _generate_with_images(args, config, run_config, prompts, sampling, eos, progress)
    elif speculative:
        for prompt in prompts:
            check_prompt(prompt, config.text, run_config, args.max_new_tokens)
        with progress.stage(f"loading {args.model} with its MTP head ({run_config.backend.value})"):
            _, spec = load_speculative_engine(args.model, run_config)
        with progress.stage(f"generating up to {args.max_new_tokens} tokens, {speculative} drafts per verify step"):
            result = generate_speculative(spec, prompts, args.max_new_tokens, speculative, eos_token_ids=eos)
        _print_result(args, result.tokens, tokenizer, {"speculative": result.acceptance.as_dict()})
        if not args.json:
            print(_acceptance_line(result.acceptance))
        return 0
    else:
        for prompt in prompts:  # fail before loading, not after
            check_prompt(prompt, config.text, run_config, args.max_new_tokens)
        with progress.stage(f"loading {args.model} ({run_config.backend.value}, TP {run_config.tp_degree}, "
                            f"{run_config.dtype})"):
            _, engine = load_engine(args.model, run_config, progress.bytes("reading the weights"))
        timed = PhaseTimer(engine, progress.generation(len(prompts), args.max_new_tokens))
        with progress.stage(f"generating up to {args.max_new_tokens} tokens for {len(prompts)} prompt(s)"):
            result = generate(timed, prompts, args.max_new_tokens, sampling, eos_token_ids=eos)
    _print_result(args, result.tokens, tokenizer, seed=seed if args.do_sample else None)
    return 0


def _print_result(args: argparse.Namespace, tokens: list[list[int]], tokenizer, extra: dict | None = None,
                  seed: int | None = None) -> None:
    """``seed``: the sampling seed, printed so a sampled run can be repeated with ``--seed``."""
    if args.json:
        out = {"tokens": tokens, **(extra or {}), **({"seed": seed} if seed is not None else {})}
        if tokenizer is not None and extra is not None:
            out["text"] = decode_replies(tokenizer, tokens)
        print(json.dumps(out))
        return
    if seed is not None:
        print(f"sampling seed: {seed}")
    replies = decode_replies(tokenizer, tokens) if tokenizer is not None else [None] * len(tokens)
    for i, (row, reply) in enumerate(zip(tokens, replies)):
        print(f"[{i}] {row}" + (f"  {reply!r}" if reply is not None else ""))
    if extra and "timing" in extra:
        print("timing:", {k: round(v, 4) for k, v in extra["timing"].items() if v is not None})
        if "equal_to_cpu" in extra:
            print("equal to the CPU runtime:", extra["equal_to_cpu"])


def _speculative_tokens(args: argparse.Namespace, has_images: bool) -> int:
    """Drafts per verify step (0: plain decoding), after checking the flags that go with --speculate."""
    if args.speculate is None:
        if args.num_speculative_tokens is not None:
            raise InputError("--num-speculative-tokens needs --speculate mtp")
        return 0
    if args.do_sample:
        raise InputError("--speculate mtp is greedy (its output equals plain greedy decoding): drop --do-sample")
    if has_images:
        raise InputError("--speculate mtp runs text prompts only: drop --image (and image placeholders)")
    count = 2 if args.num_speculative_tokens is None else args.num_speculative_tokens
    check_num_drafts(count)
    return count


def _acceptance_line(stats) -> str:
    rates = ", ".join("-" if r is None else f"{r:.0%}" for r in stats.rate_by_depth)
    return (f"speculative (mtp, K={stats.num_drafts}): {stats.tokens_per_step:.2f} tokens per verify step; "
            f"acceptance by depth {rates}")


def _check_images_fit(args: argparse.Namespace, config: ModelConfig) -> None:
    if args.image and config.vision is None:
        raise InputError("--image needs a vision-language checkpoint, but the checkpoint has no vision_config")


def _has_placeholders(config: ModelConfig, prompts: list[list[int]]) -> bool:
    return config.vision is not None and any(count_placeholders(p, config.image_token_id) for p in prompts)


def _image_requests(config: ModelConfig, prompts: list[list[int]], images: list[str]) -> list[VLRequest]:
    """One request per prompt, the images handed to the placeholders in order (checked first)."""
    per_row = assign_images_in_order(prompts, images, config.image_token_id)
    return [VLRequest(prompt, row_images) for prompt, row_images in zip(prompts, per_row)]


def _generate_with_images(args: argparse.Namespace, config: ModelConfig, run_config: RunConfig,
                          prompts: list[list[int]], sampling: SamplingParams, eos: tuple[int, ...] | None,
                          progress: Progress) -> GenerationResult:
    """Images go to the placeholders in order across prompts; every check runs before generation."""
    requests = _image_requests(config, prompts, list(args.image))
    processor = load_image_processor_config(args.model, config.vision).with_pixel_limits(args.min_pixels,
                                                                                       args.max_pixels)
    with progress.stage(f"loading {args.model} with its vision tower ({run_config.backend.value})"):
        _, session = load_vl_session(args.model, run_config, sampling=sampling, processor=processor)
    with progress.stage(f"generating up to {args.max_new_tokens} tokens for {len(prompts)} prompt(s) with "
                        f"{len(args.image)} image(s)"):
        return generate_vl(session, requests, args.max_new_tokens, eos_token_ids=eos)


def _refuse_trn2_flags(args: argparse.Namespace) -> None:
    """The Trainium2-only flags on a CPU run: refused, not ignored (a silent --compare-cpu would pass)."""
    for flag, given in (("--loop", args.loop is not None), ("--compare-cpu", args.compare_cpu),
                        ("--vision-compiled", args.vision_compiled is not None)):
        if given:
            raise InputError(f"{flag} is for a compiled model on Trainium2: it needs --compiled-model-path DIR "
                             "(with --model the CPU runtime runs); drop it or run the compiled model")


def _run_on_neuron(args: argparse.Namespace, progress: Progress) -> int:
    args.loop = args.loop or "direct"
    if args.do_sample:
        raise InputError("--do-sample: generation on Trainium2 is greedy here (compile with --on-device-sampling "
                         "for device sampling through NxDI); drop --do-sample")
    if args.image and args.loop == "adapter":
        raise InputError("NxDI's HuggingFaceGenerationAdapter cannot carry images (it has no input for the image "
                         "embeddings or the mRoPE ids): use --loop direct with --image")
    if args.vision_compiled and not args.image:
        raise InputError("--vision-compiled runs the vision tower for --image: give at least one --image")
    model = neuron_app.load_compiled(args.compiled, progress)
    model_dir = neuron_app.checkpoint_dir(model)
    config = load_model_config(model_dir)
    _check_images_fit(args, config)
    tokenizer = load_tokenizer(model_dir, "--chat" if args.chat else "--prompt") if args.prompt else None
    prompts = prompt_ids(args, config, tokenizer, images=len(args.image))
    neuron_app.check_batch(prompts, model)
    if not args.image and _has_placeholders(config, prompts):
        raise InputError(f"the prompts hold image placeholders (token {config.image_token_id}) but no --image "
                         "was given: pass one --image per placeholder")
    eos = () if args.no_eos else tuple(config.text.eos_token_ids)
    with progress.stage(f"generating up to {args.max_new_tokens} tokens for {len(prompts)} prompt(s)"):
        if args.image:
            requests = _image_requests(config, prompts, list(args.image))
            tokens, timing, session = neuron_app.generate_images(model, requests, args.max_new_tokens, eos,
                                                                 args.vision_compiled, args.min_pixels,
                                                                 args.max_pixels)
        else:
            neuron_app.check_text_lengths(prompts, model, args.max_new_tokens)
            tokens, timing = neuron_app.generate_text(model, prompts, args.max_new_tokens, eos, args.loop,
                                                      progress.generation(len(prompts), args.max_new_tokens))
    extra: dict = {"timing": timing}
    if args.compare_cpu:
        with progress.stage("running the CPU reference (qwen35_neuron.runtime) on the same prompts"):
            reference = (neuron_app.cpu_vl_reference(session, requests, args.max_new_tokens, eos) if args.image
                         else neuron_app.cpu_reference(model, prompts, args.max_new_tokens, eos))
        extra.update(cpu_tokens=reference, equal_to_cpu=reference == tokens)
    _print_result(args, tokens, tokenizer, extra)
    return 0 if extra.get("equal_to_cpu", True) else 1
