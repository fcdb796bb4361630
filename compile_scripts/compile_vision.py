#!/usr/bin/env python
"""Compile the Qwen3.5 vision tower for Trainium2, one graph per patch bucket.

Writes vision_tower_<bucket>.pt and vision_manifest.json to OUT_DIR; load them next to the text
model with qwen35_neuron.neuron.vision_encoder.load_vision_runner(OUT_DIR, MODEL_DIR) and pass the
runner to qwen35_neuron.runtime.vl_session.load_vl_session(..., runner=...). Buckets (patch counts) come from
--buckets, or from --image-size (the patch counts those images become after preprocessing), or from
--max-pixels (a ladder of --count buckets, each a quarter of the next), or else RunConfig's default.
--dry-run prints the plan and needs no Neuron SDK.

Examples:
  python compile_scripts/compile_vision.py /models/Qwen3.5-35B-A3B /compiled/vision --buckets 1024 4096
  python compile_scripts/compile_vision.py /models/Qwen3.5-35B-A3B /compiled/vision --image-size 480x640 --dry-run
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from qwen35_neuron.cli.options import POSITIVE, CliParser, run_guarded
from qwen35_neuron.config import RunConfig, load_model_config
from qwen35_neuron.errors import Qwen35Error
from qwen35_neuron.vision.compiled import bucket_file_name, buckets_for_images, buckets_for_pixel_limit
from qwen35_neuron.vision.packing import check_buckets
from qwen35_neuron.vision.preprocess import load_image_processor_config


def _image_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"image size {text!r} is not HEIGHTxWIDTH (e.g. 480x640)") from err
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"image size {text!r} must be positive")
    return height, width


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[2:]),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="Hugging Face checkpoint directory (config.json + safetensors)")
    parser.add_argument("out_dir", help="where the compiled buckets and the manifest go")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--buckets", type=POSITIVE, nargs="+", metavar="PATCHES",
                        help="patch counts to compile, multiples of spatial_merge_size**2 "
                             f"(default {' '.join(map(str, RunConfig().vision_buckets))})")
    choice.add_argument("--image-size", type=_image_size, action="append", metavar="HxW",
                        help="size an image will have, in pixels (repeatable): one bucket per distinct patch count")
    choice.add_argument("--max-pixels", type=POSITIVE, help="largest image, in pixels: a ladder of --count buckets")
    parser.add_argument("--count", type=POSITIVE, default=3, help="buckets in the --max-pixels ladder (default 3)")
    parser.add_argument("--align", type=POSITIVE, default=None,
                        help="round buckets from --image-size/--max-pixels up to a multiple of this "
                             "(default spatial_merge_size**2)")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16",
                        help="weights and activations of the compiled tower (default bfloat16)")
    parser.add_argument("--compiler-args", default=None,
                        help="neuronx-cc flags (default: vision_encoder.DEFAULT_COMPILER_ARGS, "
                             "'--model-type=transformer --auto-cast=none'); add --lnc=N to match the runtime")
    parser.add_argument("--workdir", default=None, help="keep neuronx-cc work files here (one folder per bucket)")
    parser.add_argument("--dry-run", action="store_true", help="print the buckets and files, compile nothing")
    return parser


def plan_buckets(args: argparse.Namespace) -> tuple[int, ...]:
    """The buckets the arguments ask for, checked against the checkpoint's vision config."""
    config = load_model_config(args.model_dir)
    if config.vision is None:
        raise Qwen35Error(f"{args.model_dir} has no vision_config: there is no vision tower to compile")
    if args.buckets:
        buckets = args.buckets
    elif args.image_size or args.max_pixels:
        processor = load_image_processor_config(args.model_dir, config.vision)
        if args.image_size:
            buckets = buckets_for_images(args.image_size, processor, args.align)
        else:
            buckets = buckets_for_pixel_limit(processor, args.max_pixels, args.count, args.align)
    else:
        buckets = RunConfig().vision_buckets
    return check_buckets(buckets, config.vision)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    return run_guarded(lambda: run(parser.parse_args(argv)))


def run(args: argparse.Namespace) -> int:
    buckets = plan_buckets(args)
    out = Path(args.out_dir)
    print(f"vision buckets (patches): {' '.join(map(str, buckets))}; dtype {args.dtype}")
    for bucket in buckets:
        print(f"  {out / bucket_file_name(bucket)}")
    if args.dry_run:
        print("dry run: nothing compiled")
        return 0
    try:
        from qwen35_neuron.neuron import vision_encoder
    except ImportError as err:  # the Neuron SDK is missing: the import error says what to install
        raise Qwen35Error(str(err)) from err
    options = {} if args.compiler_args is None else {"compiler_args": args.compiler_args}
    start = time.perf_counter()
    manifest = vision_encoder.compile_vision_tower(args.model_dir, out, buckets, args.dtype,
                                                   compiler_workdir=args.workdir, progress=print, **options)
    print(f"done in {time.perf_counter() - start:.1f} s: {len(manifest.buckets)} bucket(s) in {out}, "
          f"config hash {manifest.config_hash}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
