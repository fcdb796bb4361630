"""``qwen35-neuron compile``: trace, compile and shard a checkpoint for Trainium2 (NxD Inference).

``--print-settings`` works on any machine: the settings, NxDI's ``MoENeuronConfig`` keywords and
the roofline verdict (modelled). Compiling needs the Neuron SDK; without it the command stops with
one ``error:`` line. The compiled directory holds model.pt, neuron_config.json and (by default)
the pre-sharded weights; ``generate`` and ``bench`` load it with ``--compiled-model-path``.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict

from ..analysis.roofline import preset_report
from ..checkpoint.gate import check_checkpoint
from ..checkpoint.integrity import scan_values, value_error
from ..checkpoint.reader import CheckpointReader
from ..config import ModelConfig, load_model_config
from ..config.neuron_settings import INSTANCE_OF_PRESET, NeuronSettings, check_settings_fit_model, neuron_config_kwargs
from ..errors import InputError, UnsupportedConfigError
from .neuron_app import import_neuron_layer
from .neuron_options import add_neuron_settings_options, settings_from_args, with_flag_names
from .progress import Progress, add_progress_options

NAME = "compile"
HELP = "compile a checkpoint for Trainium2 with NxD Inference (--print-settings works on any machine)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-path", "--model", dest="model", metavar="DIR", required=True,
                        help="Hugging Face checkpoint directory (config.json + safetensors)")
    parser.add_argument("--compiled-model-path", "--out", dest="compiled", metavar="DIR",
                        help="directory for the compiled artifacts (required unless --print-settings)")
    parser.add_argument("--print-settings", action="store_true",
                        help="print settings, NxDI keywords and the roofline verdict, then exit (no SDK needed)")
    parser.add_argument("--verbose", action="store_true", help="INFO logging (NxDI's own progress, kernel choices)")
    parser.add_argument("--no-scan-values", dest="scan_values", action="store_false",
                        help="skip reading every weight for NaN/Inf before compiling (the sharding step still "
                             "refuses them, after the compile)")
    add_neuron_settings_options(parser)
    add_progress_options(parser)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    settings = settings_from_args(args)
    if args.print_settings:
        print_settings(args.model, settings, args.preset)
        return 0
    if not args.compiled:
        raise InputError("--compiled-model-path DIR is required to compile (or use --print-settings)")
    compile_model(args.model, args.compiled, settings, Progress.from_args(args), scan=args.scan_values)
    return 0


def print_settings(model_dir: str, settings: NeuronSettings, preset_name: str) -> None:
    config = load_model_config(model_dir)
    check_fit(config, settings)
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


def check_fit(config: ModelConfig, settings: NeuronSettings) -> None:
    """TP must split the heads, experts and vocabulary, and --seq-len fit the model's positions; the
    message names the flags."""
    try:
        check_settings_fit_model(settings, config.text)
    except UnsupportedConfigError as err:
        raise InputError(with_flag_names(str(err))) from err


def compile_model(model_dir: str, out_dir: str, settings: NeuronSettings, progress: Progress,
                  scan: bool = True) -> None:
    """Checks first (config, TP split, file headers and tensor gate, the SDK, weight values: the
    slowest last), then NxDI's trace and compile."""
    config = load_model_config(model_dir)
    check_fit(config, settings)
    with CheckpointReader(model_dir) as reader, \
            progress.stage(f"[1/3] tensor gate{' and NaN/Inf scan' if scan else ''} of {model_dir}"):
        check_checkpoint(reader, config).raise_if_failed()
        neuron = import_neuron_layer()
        problems = scan_values(reader, progress=progress.bytes("scanning the weights")) if scan else []
        if problems:
            raise value_error(reader, problems[0])
    with progress.stage(f"[2/3] NxDI application: TP {settings.tp_degree}, LNC {settings.lnc}, batch "
                        f"{settings.batch_size}, CTE buckets {list(settings.context_buckets)}, TKG buckets "
                        f"{list(settings.token_generation_buckets)}, {settings.dtype}"):
        model = neuron.Qwen35MoeForCausalLM(model_dir, neuron.inference_config(model_dir, settings))
    weights = "pre-sharded weights" if settings.save_sharded_checkpoint else "weights sharded at load"
    graphs = len(settings.context_buckets) + len(settings.token_generation_buckets)
    with progress.stage(f"[3/3] tracing and compiling {graphs} graphs into {out_dir} "
                        f"({weights}; NxDI logs each graph; tens of minutes for the real model)"):
        model.compile(out_dir)
    progress.say(f"compiled: load it with `qwen35-neuron generate --compiled-model-path {out_dir}`")
