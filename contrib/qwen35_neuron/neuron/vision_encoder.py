"""The vision tower compiled by itself for Trainium2, one ``torch_neuronx.trace`` graph per patch bucket.

The tower runs apart from the NxDI text model: its graphs take a bucket of packed patches plus
host geometry and return the merged image embeddings, which the VL orchestrator scatters into the
text model's CTE input embeddings. Everything that needs no SDK (example inputs, manifest, bucket
lookup, input casting, error messages) lives in :mod:`qwen35_neuron.vision.compiled` and is tested on
a CPU; this module only adds the SDK's tracer and loader. ``torch_neuronx`` is imported inside the
functions, so importing this module never requires the SDK.

Numerics of the traced graph are the tower's: bf16 weights and activations, rotary and softmax in
fp32, masks at -65504 (finite in bf16), ``--auto-cast=none`` so the compiler keeps those fp32 ops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ..config import ModelConfig, VisionConfig, load_model_config
from ..errors import UnsupportedConfigError
from ..vision.compiled import (
    DTYPE_NAMES,
    CompiledVisionTowers,
    Progress,
    Tracer,
    VisionManifest,
    compile_towers,
    dtype_name,
    load_towers,
    read_manifest,
    sdk_versions,
    weights_digest,
)
from ..vision.loading import load_vision_tower
from ..vision.packing import PackedImages
from ..vision.tower import VisionTower

# Keep fp32 ops (rotary, softmax) in fp32; the compiler would otherwise cast fp32 matmuls to bf16.
# Add --lnc=N to match NEURON_LOGICAL_NC_CONFIG of the process that will load the graphs.
DEFAULT_COMPILER_ARGS = "--model-type=transformer --auto-cast=none"

VisionRunner = Callable[[PackedImages], torch.Tensor]  # same as qwen35_neuron.vl.VisionRunner


def build_vision_tower(model_dir: str | Path, dtype: str | torch.dtype = "bfloat16") -> tuple[ModelConfig, VisionTower]:
    """The eager tower with the checkpoint's vision weights (gated), cast to ``dtype``, eval mode."""
    config = load_model_config(model_dir)
    return config, load_vision_tower(model_dir, config, DTYPE_NAMES[dtype_name(dtype)])


def neuron_tracer(compiler_args: str | None = DEFAULT_COMPILER_ARGS,
                  compiler_workdir: str | Path | None = None) -> Tracer:
    """A tracer for :func:`compile_towers` that compiles with neuronx-cc (one work dir per bucket)."""

    def trace(tower: nn.Module, example: tuple[torch.Tensor, ...]):
        import torch_neuronx

        workdir = None if compiler_workdir is None else str(Path(compiler_workdir) / f"bucket_{example[0].shape[0]}")
        return torch_neuronx.trace(tower, example, compiler_args=compiler_args, compiler_workdir=workdir)

    return trace


def compile_tower_module(tower: nn.Module, config: VisionConfig, out_dir: str | Path, buckets: Sequence[int],
                         dtype: str | torch.dtype = "bfloat16", compiler_args: str | None = DEFAULT_COMPILER_ARGS,
                         *, compiler_workdir: str | Path | None = None,
                         progress: Progress | None = None) -> VisionManifest:
    """Compile an already built tower (weights loaded) per bucket into ``out_dir``."""
    return compile_towers(tower, config, buckets, out_dir, neuron_tracer(compiler_args, compiler_workdir),
                          dtype=dtype, backend="neuron", compiler_args=compiler_args, versions=sdk_versions(),
                          progress=progress)


def compile_vision_tower(model_dir: str | Path, out_dir: str | Path, buckets: Sequence[int],
                         dtype: str | torch.dtype = "bfloat16", compiler_args: str | None = DEFAULT_COMPILER_ARGS,
                         *, compiler_workdir: str | Path | None = None,
                         progress: Progress | None = None) -> VisionManifest:
    """Trace the checkpoint's vision tower once per patch bucket; writes ``vision_tower_<bucket>.pt``
    and ``vision_manifest.json`` to ``out_dir`` and returns the manifest."""
    say = progress or (lambda _msg: None)
    say(f"loading the vision tower of {model_dir} in {dtype_name(dtype)}")
    config, tower = build_vision_tower(model_dir, dtype)
    return compile_tower_module(tower, config.vision, out_dir, buckets, dtype, compiler_args,
                                compiler_workdir=compiler_workdir, progress=progress)


def load_vision_towers(out_dir: str | Path, model_dir: str | Path | None = None, *,
                       run_buckets: Sequence[int] | None = None, check_weights: bool = False) -> CompiledVisionTowers:
    """Load every compiled bucket of ``out_dir``.

    With ``model_dir`` the manifest must match that checkpoint's vision config (and, with
    ``check_weights``, its vision weights, read once more from disk); with ``run_buckets`` every
    bucket the run packs images into must have been compiled.
    """
    import torch_neuronx  # noqa: F401  (registers the Neuron ops torch.jit.load needs)

    expected, digest = None, None
    if model_dir is not None:
        config = load_model_config(model_dir)
        if config.vision is None:
            raise UnsupportedConfigError(f"{model_dir} has no vision_config: pass the checkpoint the tower was "
                                         "compiled from")
        expected = config.vision
        if check_weights:
            _, tower = build_vision_tower(model_dir, read_manifest(out_dir).dtype)
            digest = weights_digest(tower.state_dict())
    return load_towers(out_dir, torch.jit.load, expected=expected, run_buckets=run_buckets, expected_weights=digest,
                       current_versions=sdk_versions())


def load_vision_runner(out_dir: str | Path, model_dir: str | Path | None = None, *,
                       run_buckets: Sequence[int] | None = None, check_weights: bool = False) -> VisionRunner:
    """A VisionRunner for :func:`qwen35_neuron.runtime.vl_session.load_vl_session` (``runner=``) over the compiled buckets.

    Equivalent to ``per_bucket_runner(load_vision_towers(...))``, with a clear error for a bucket
    that was not compiled and inputs cast to the traced dtypes.
    """
    return load_vision_towers(out_dir, model_dir, run_buckets=run_buckets, check_weights=check_weights).run
