#!/usr/bin/env python
"""Compile the Qwen3.5 MoE text model for Trainium2 (NxD Inference): trace, compile, shard weights.

Run on a trn2 host with the Neuron SDK (NxD Inference venv). Example, 35B-A3B on a trn2.3xlarge:

    python compile_scripts/compile_text.py --model /models/Qwen3.5-35B-A3B --out /compiled/qwen35-tp4 \
        --preset trn2.3xlarge --batch-size 4 --buckets 128,512,2048 --max-length 4096

``--print-settings`` shows the settings, NxDI's neuron-config keywords and the roofline verdict
without the SDK (any machine). The compiled directory holds model.pt, neuron_config.json and (by
default) pre-sharded weights; load it with compile_scripts/generate.py or Qwen35MoeForCausalLM.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict

from qwen35_neuron.analysis.roofline import preset_report
from qwen35_neuron.checkpoint.gate import check_checkpoint
from qwen35_neuron.config import load_model_config
from qwen35_neuron.config.neuron_settings import (
    ATTENTION_KERNELS,
    DELTANET_KERNELS,
    DTYPES,
    INSTANCE_OF_PRESET,
    MOE_BACKENDS,
    PRESETS,
    NeuronSettings,
    neuron_config_kwargs,
    preset,
)
from qwen35_neuron.errors import Qwen35Error, UnsupportedConfigError
from qwen35_neuron.parallel.sharding import check_tp_supported


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Preset plus overrides; every unset override keeps the preset's value."""
    group = parser.add_argument_group("Neuron settings (a preset, then overrides)")
    group.add_argument("--preset", choices=sorted(PRESETS), default="trn2.3xlarge",
                       help="instance preset: trn2.3xlarge = TP 4; trn2.48xlarge = TP 8; -tp16 / -tp32 variants")
    group.add_argument("--tp", type=int, help="tensor-parallel ranks")
    group.add_argument("--lnc", type=int, choices=[1, 2], help="logical NeuronCore config (2 on trn2)")
    group.add_argument("--batch-size", type=int, help="rows of the state buffers = decode batch")
    group.add_argument("--ctx-batch-size", type=int, help="rows per context-encoding call (default: batch size)")
    group.add_argument("--buckets", help="context-encoding bucket lengths, comma-separated (e.g. 128,512,2048)")
    group.add_argument("--max-length", type=int, help="cache slots per row (prompt + generated)")
    group.add_argument("--dtype", choices=DTYPES, help="weights and activations (recurrent state is always fp32)")
    group.add_argument("--moe-backend", choices=MOE_BACKENDS,
                       help="ours: SparseMoe static form; nxd: NxD RouterTopK + ExpertMLPsV2 (untested on hw)")
    group.add_argument("--deltanet-kernel", choices=DELTANET_KERNELS,
                       help="ours: qwen35_neuron.kernels NKI; nkilib: nki-library gdn_cte prefill if installed; torch")
    group.add_argument("--attention-kernel", choices=ATTENTION_KERNELS, help="ours (NKI, if present) or torch")
    group.add_argument("--on-device-sampling", action="store_true", default=None, help="greedy sampling on device")
    group.add_argument("--shard-at-load", action="store_true",
                       help="do not pre-shard weights at compile time (shard at every load instead)")
    group.add_argument("--compiler-args", help="replace NxDI's per-graph compiler flags (--lnc is added)")


def settings_from_args(args: argparse.Namespace) -> NeuronSettings:
    buckets = tuple(int(b) for b in args.buckets.split(",")) if args.buckets else None
    return preset(args.preset, tp_degree=args.tp, lnc=args.lnc, batch_size=args.batch_size,
                  ctx_batch_size=args.ctx_batch_size, context_buckets=buckets, max_length=args.max_length,
                  dtype=args.dtype, moe_backend=args.moe_backend, deltanet_kernel=args.deltanet_kernel,
                  attention_kernel=args.attention_kernel, on_device_sampling=args.on_device_sampling,
                  save_sharded_checkpoint=False if args.shard_at_load else None, compiler_args=args.compiler_args)


def progress(step: int, total: int, message: str, started: float) -> None:
    print(f"[{step}/{total}] {message} (t={time.perf_counter() - started:.0f}s)", flush=True)


def print_settings(model_dir: str, settings: NeuronSettings, preset_name: str) -> None:
    config = load_model_config(model_dir)
    check_tp_supported(config.text, settings.tp_degree)
    print("settings:", json.dumps(asdict(settings)))
    print("MoENeuronConfig keywords:", json.dumps(neuron_config_kwargs(settings)))
    try:
        report = preset_report(config.text, config.vision, INSTANCE_OF_PRESET[preset_name], tp=settings.tp_degree,
                               batch=settings.batch_size, max_seq_len=settings.max_length,
                               prefill_buckets=settings.context_buckets)
    except UnsupportedConfigError as err:
        print(f"roofline: not modelled for these settings ({err})")
        return
    verdict = "fits" if report.fits else "DOES NOT FIT"
    print(f"roofline: {report.hbm_total / 2**30:.1f} GiB of {report.hbm_capacity / 2**30:.1f} GiB per rank "
          f"({verdict}); TPOT >= {report.tpot_lower_bound_s * 1e3:.2f} ms (modelled)")


def compile_model(model_dir: str, out_dir: str, settings: NeuronSettings) -> None:
    started = time.perf_counter()
    progress(1, 4, f"config and tensor gate of {model_dir}", started)
    report = check_checkpoint(model_dir, load_model_config(model_dir))
    report.raise_if_failed()
    from qwen35_neuron.neuron import Qwen35MoeForCausalLM, inference_config  # needs the SDK

    config = inference_config(model_dir, settings)
    progress(2, 4, f"building the NxDI application: TP {settings.tp_degree}, LNC {settings.lnc}, "
                   f"batch {settings.batch_size}, CTE buckets {list(settings.context_buckets)}, "
                   f"TKG bucket {settings.max_length}, {settings.dtype}", started)
    model = Qwen35MoeForCausalLM(model_dir, config)
    progress(3, 4, f"tracing and compiling {len(settings.context_buckets) + 1} graphs into {out_dir} "
                   "(NxDI logs each; tens of minutes for the real model)", started)
    model.compile(out_dir)
    weights = "pre-sharded" if settings.save_sharded_checkpoint else "shard at load"
    progress(4, 4, f"done: {out_dir} (weights {weights})", started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--model", required=True, help="Hugging Face checkpoint directory (config.json + safetensors)")
    parser.add_argument("--out", help="directory for the compiled artifacts (required unless --print-settings)")
    parser.add_argument("--print-settings", action="store_true",
                        help="print settings, NxDI keywords and the roofline verdict, then exit (no SDK needed)")
    parser.add_argument("--verbose", action="store_true", help="INFO logging (NxDI's progress and kernel choices)")
    add_settings_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        settings = settings_from_args(args)
        if args.print_settings:
            print_settings(args.model, settings, args.preset)
            return 0
        if not args.out:
            parser.error("--out is required to compile")
        compile_model(args.model, args.out, settings)
    except (Qwen35Error, ImportError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
