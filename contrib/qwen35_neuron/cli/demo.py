"""``qwen35-neuron demo``: a tiny random Qwen3.5-MoE checkpoint, our model against transformers.

Builds the checkpoint (real config.json + safetensors) in a temporary directory, generates greedily
with our runtime and with ``Qwen3_5MoeForConditionalGeneration.generate``, and prints both token
lists, whether they match, the largest logit difference and the time each took: a text case and an
image case (prompts with one and two images through our vision tower and VL orchestrator). Exit 0
only when every row's tokens match in every case run.

The reference side (tiny checkpoints, transformers' Qwen3.5 classes) comes from the test helpers,
``qwen35_neuron.testing``, imported inside the functions of the reference run only: loading the CLI
(``qwen35-neuron generate``, ``inspect``, ...) never loads them (``tests/test_layers.py`` holds it).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import torch

from ..config import RunConfig, load_model_config, parse_model_config
from ..errors import InputError
from ..runtime.loading import load_engine
from ..runtime.session import generate
from ..runtime.vl_session import load_vl_session
from ..vision.preprocess import preprocess_images
from ..vl import VLRequest, generate_vl, processor_for_vision, write_preprocessor_config
from .options import MAX_TP, SEED, check_run_against_model, int_range, run_config_from_args

NAME = "demo"
HELP = "build a tiny random checkpoint, run our model and transformers on it, compare (no arguments needed)"
DEMO_PROMPTS = ([11, 42, 7, 99, 3], [5, 200, 17, 64, 128, 31, 9, 77, 150, 2, 88])
DEMO_NEW_TOKENS = 16
# Image case (tiny vocab: 250 image placeholder, 252/253 vision start/end): one image, then two.
DEMO_IMAGE_PROMPTS = (([11, 252, 250, 253, 42, 7], [0]), ([5, 252, 250, 253, 17, 252, 250, 253, 9], [0, 1]))
DEMO_IMAGE_SIZES = ((16, 24), (24, 16))  # (height, width) px: 4x6 and 6x4 patches of 4 px
DEMO_PIXEL_LIMITS = (64, 4096)  # min/max pixels of the tiny preprocessor
DEMO_VISION_BUCKETS = (32, 64)
HEAD_DIMS = (8, 512)  # multiples of 8: a quarter of the head rotates, in (cos, sin) pairs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["dense", "simulated-tp", "nki-sim"], default="dense",
                        help="which of our CPU backends to compare with transformers")
    parser.add_argument("--tp", type=int_range(1, MAX_TP), default=None,
                        help="ranks for --backend simulated-tp (default 2)")
    parser.add_argument("--head-dim", type=int_range(*HEAD_DIMS), default=32,
                        help=f"attention head_dim of the tiny model, a multiple of 8 in {HEAD_DIMS[0]}..{HEAD_DIMS[1]} "
                             "(e.g. 256)")
    parser.add_argument("--seed", type=SEED, default=0, help="seed of the random weights")
    parser.add_argument("--case", choices=["all", "text", "image"], default="all",
                        help="text prompts, prompts with images, or both (default)")


def run(args: argparse.Namespace) -> int:
    if args.head_dim % 8:
        raise InputError(f"--head-dim {args.head_dim} must be a multiple of 8 (a quarter of the head rotates in "
                         "pairs)")
    from ..testing.reference import quiet_transformers
    from ..testing.tiny import build_tiny_checkpoint, load_hf_reference, tiny_config_dict

    quiet_transformers()
    defaults = argparse.Namespace(buckets=(16, 32), max_seq_len=64, dtype="float32", moe="eager")
    run_config: RunConfig = run_config_from_args(argparse.Namespace(**vars(defaults), **vars(args)),
                                                 batch_size=len(DEMO_PROMPTS))
    run_config = dataclasses.replace(run_config, vision_buckets=DEMO_VISION_BUCKETS)
    config_dict = tiny_config_dict(head_dim=args.head_dim)
    check_run_against_model(run_config, parse_model_config(config_dict).text)
    ok = True
    with tempfile.TemporaryDirectory(prefix="qwen35-demo-") as directory:
        print(f"building a tiny random Qwen3.5-MoE checkpoint in {directory} (head_dim {args.head_dim}) ...")
        build_tiny_checkpoint(directory, config_dict, seed=args.seed)
        reference = None
        if args.case in ("all", "text"):
            reference = load_hf_reference(directory)
            ok = _text_case(directory, run_config, reference) and ok
        if args.case in ("all", "image"):
            reference = reference if reference is not None else load_hf_reference(directory)
            ok = _image_case(directory, run_config, reference) and ok
    print("RESULT: tokens match" if ok else "RESULT: MISMATCH")
    return 0 if ok else 1


def _text_case(directory: str, run_config: RunConfig, reference) -> bool:
    from ..testing.reference import hf_greedy

    config, engine = load_engine(directory, run_config)
    eos = config.text.eos_token_ids
    start = time.perf_counter()
    ours = generate(engine, [list(p) for p in DEMO_PROMPTS], DEMO_NEW_TOKENS, eos_token_ids=eos)
    ours_seconds = time.perf_counter() - start

    start = time.perf_counter()
    theirs = [hf_greedy(reference, list(p), DEMO_NEW_TOKENS, eos) for p in DEMO_PROMPTS]
    hf_seconds = time.perf_counter() - start

    all_match, max_diff = True, 0.0
    for row, (prompt, (hf_tokens, hf_logits)) in enumerate(zip(DEMO_PROMPTS, theirs)):
        match = ours.tokens[row] == hf_tokens
        diff = _max_logit_diff(ours.logits[row], hf_logits)
        all_match, max_diff = all_match and match, max(max_diff, diff)
        print(f"prompt {row} {list(prompt)}")
        print(f"  ours ({run_config.backend.value}, tp {run_config.tp_degree}): {ours.tokens[row]}")
        print(f"  transformers:          {hf_tokens}")
        print(f"  match: {match}  max |logit diff|: {diff:.2e}")
    print(f"time: ours {ours_seconds:.2f} s, transformers {hf_seconds:.2f} s")
    return all_match


def _image_case(directory: str, run_config: RunConfig, reference) -> bool:
    """Prompts with one and two images (batched together), each row against transformers alone."""
    from ..testing.reference import hf_greedy

    config = load_model_config(directory)
    write_preprocessor_config(directory, processor_for_vision(config.vision, *DEMO_PIXEL_LIMITS))
    paths = _demo_images(directory)
    requests = [VLRequest(list(prompt), [paths[i] for i in images]) for prompt, images in DEMO_IMAGE_PROMPTS]
    _, session = load_vl_session(directory, run_config)
    eos = config.text.eos_token_ids
    start = time.perf_counter()
    ours = generate_vl(session, requests, DEMO_NEW_TOKENS, eos_token_ids=eos)
    ours_seconds = time.perf_counter() - start

    start = time.perf_counter()
    theirs = []
    for request in requests:
        batch = session.prepare([request])
        processed = preprocess_images(list(request.images), session.processor)
        theirs.append(hf_greedy(reference, batch.prompts[0], DEMO_NEW_TOKENS, eos,
                                pixel_values=processed.pixel_values, image_grid_thw=processed.grids,
                                image_token_id=config.image_token_id))
    hf_seconds = time.perf_counter() - start

    all_match = True
    print(f"image case: {len(paths)} images of {DEMO_IMAGE_SIZES} px, patch {config.vision.patch_size}")
    for row, (request, (hf_tokens, hf_logits)) in enumerate(zip(requests, theirs)):
        same = ours.tokens[row] == hf_tokens
        all_match = all_match and same
        print(f"image prompt {row} {list(request.input_ids)} with {len(request.images)} image(s)")
        print(f"  ours:         {ours.tokens[row]}")
        print(f"  transformers: {hf_tokens}")
        print(f"  match: {same}  max |logit diff|: {_max_logit_diff(ours.logits[row], hf_logits):.2e}")
    print(f"time (image case): ours {ours_seconds:.2f} s, transformers {hf_seconds:.2f} s")
    return all_match


def _max_logit_diff(ours: list[torch.Tensor], hf_logits: torch.Tensor) -> float:
    steps = min(len(ours), hf_logits.shape[0])
    return (torch.stack(ours[:steps]) - hf_logits[:steps]).abs().max().item() if steps else 0.0


def _demo_images(directory: str) -> list[str]:
    """Seeded random RGB images written as PNG files (the CLI path reads files)."""
    from ..testing.images import write_random_images

    sizes = {f"demo-image-{i}": size for i, size in enumerate(DEMO_IMAGE_SIZES)}
    return list(write_random_images(directory, sizes, seed=0).values())