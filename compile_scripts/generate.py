#!/usr/bin/env python
"""Load a compiled Qwen3.5 MoE text model on Trainium2 and generate (greedy), optionally against the CPU runtime.

    python compile_scripts/generate.py --compiled /compiled/qwen35-tp4 --prompt "The capital of France is" \
        --max-new-tokens 32
    python compile_scripts/generate.py --compiled /compiled/qwen35-tp4 --input-ids 1,2,3 --input-ids 4,5 \
        --compare-cpu
    python compile_scripts/generate.py --compiled /compiled/qwen35-tp4 --vision-compiled /compiled/qwen35-vision \
        --prompt "<|vision_start|><|image_pad|><|vision_end|>Describe the image." --image cat.png

The config (and the checkpoint directory, for tokenizer and shard-at-load weights) comes from
``neuron_config.json`` in the compiled directory. ``--loop adapter`` drives NxDI's
HuggingFaceGenerationAdapter (transformers' generate); ``--loop direct`` (default) our own loop,
which steps exactly like the CPU runtime, so ``--compare-cpu`` can check the tokens one to one.

Images (``--image``, repeatable): each image placeholder of the prompts (``<|image_pad|>`` in
``--prompt``, ``image_token_id`` in ``--input-ids``) takes the next image, in order across the
prompts. The vision tower runs from ``--vision-compiled`` (towers compiled by compile_vision.py; their
patch buckets are used) or, without it, on the CPU; the text model is the compiled one
(``qwen35_neuron.neuron.vl.NeuronVLSession``). NxDI's HF adapter cannot carry images.
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


def prompts_with_placeholders(model_dir: str, texts: list[str], image_token_id: int):
    """Tokenizer and ids of text prompts, each literal <|image_pad|> one ``image_token_id``."""
    if not texts:
        return None, []
    from transformers import AutoTokenizer

    from qwen35_neuron.vl import encode_with_placeholders

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return tokenizer, [encode_with_placeholders(tokenizer, t, image_token_id) for t in texts]


def image_requests(config, prompts: list[list[int]], images: list[str]):
    """One VLRequest per prompt, the images handed to the placeholders in order (checked first)."""
    from qwen35_neuron.vl import VLRequest, assign_images_in_order

    if config.vision is None:
        raise InputError("--image needs a vision-language checkpoint, but the compiled model's checkpoint has no "
                         "vision_config")
    per_row = assign_images_in_order(prompts, images, config.image_token_id)
    return [VLRequest(prompt, row_images) for prompt, row_images in zip(prompts, per_row)]


def generate_images(model, requests, max_new_tokens: int, eos: tuple[int, ...], vision_compiled: str | None = None,
                    min_pixels: int | None = None, max_pixels: int | None = None):
    """Greedy VL generation on the compiled text model: (tokens per prompt, timing, the session)."""
    from qwen35_neuron.neuron.vl import load_neuron_vl_session
    from qwen35_neuron.vl import generate_vl

    session = load_neuron_vl_session(model, vision_compiled=vision_compiled)
    session.processor = session.processor.with_pixel_limits(min_pixels, max_pixels)
    started = time.perf_counter()
    result = generate_vl(session, requests, max_new_tokens, eos)
    return result.tokens, {"total_s": time.perf_counter() - started}, session


def cpu_vl_reference(model_dir: str, session, requests, max_new_tokens: int, eos: tuple[int, ...]):
    """The CPU VL path's greedy tokens for the same requests, buckets and image processing."""
    import dataclasses

    from qwen35_neuron.vl import generate_vl, load_vl_session

    run = dataclasses.replace(session.run, batch_size=len(requests))
    _, reference = load_vl_session(model_dir, run, processor=session.processor)
    return generate_vl(reference, requests, max_new_tokens, eos).tokens


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
    parser.add_argument("--image", action="append", default=[],
                        help="image file for the next image placeholder (<|image_pad|> in --prompt, image_token_id "
                             "in --input-ids); repeat, in placeholder order across prompts")
    parser.add_argument("--vision-compiled", default=None,
                        help="directory written by compile_vision.py (default: the vision tower runs on the CPU)")
    parser.add_argument("--min-pixels", type=int, default=None, help="override the image processor's min_pixels")
    parser.add_argument("--max-pixels", type=int, default=None, help="override the image processor's max_pixels")
    args = parser.parse_args(argv)
    try:
        if args.image and args.loop == "adapter":
            raise InputError("NxDI's HuggingFaceGenerationAdapter cannot carry images (it has no input for the image "
                             "embeddings or the mRoPE ids): use --loop direct with --image")
        if args.vision_compiled and not args.image:
            raise InputError("--vision-compiled runs the vision tower for --image: give at least one --image")
        model = load(args.compiled)
        settings, text, model_dir = model.config.settings(), model.config.text(), model.config._name_or_path
        from qwen35_neuron.config import load_model_config
        from qwen35_neuron.vl import count_placeholders

        config = load_model_config(model_dir)
        if args.image:
            tokenizer, prompts = prompts_with_placeholders(model_dir, args.prompt, config.image_token_id)
        else:
            tokenizer, prompts = tokenize(model_dir, args.prompt)
        prompts += [parse_ids(t) for t in args.input_ids]
        if not prompts:
            raise InputError("give at least one --prompt or --input-ids")
        if not args.image and config.vision is not None and any(count_placeholders(p, config.image_token_id)
                                                                 for p in prompts):
            raise InputError(f"the prompts hold image placeholders (token {config.image_token_id}) but no --image "
                             "was given: pass one --image per placeholder")
        if len(prompts) > settings.batch_size:
            raise InputError(f"{len(prompts)} prompts but the model was compiled for batch {settings.batch_size}")
        eos = () if args.no_eos else tuple(text.eos_token_ids)
        from qwen35_neuron.neuron.generation import generate_direct, generate_with_adapter

        if args.image:
            requests = image_requests(config, prompts, list(args.image))
            tokens, timing, session = generate_images(model, requests, args.max_new_tokens, eos, args.vision_compiled,
                                                      args.min_pixels, args.max_pixels)
        elif args.loop == "adapter":
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
            if args.image:
                reference = cpu_vl_reference(model_dir, session, requests, args.max_new_tokens, eos)
            else:
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
