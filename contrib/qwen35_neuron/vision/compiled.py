"""Compiled vision towers, one per patch bucket: the bookkeeping that needs no Neuron SDK.

A backend traces :class:`~qwen35_neuron.vision.tower.VisionTower` once per bucket (on trn2 with
``torch_neuronx.trace``; in CPU tests with ``torch.jit.trace``) and saves ``vision_tower_<bucket>.pt``
plus ``vision_manifest.json``. The manifest records what the graphs were built for (vision config
hash, dtype, per-input shapes and dtypes, SDK versions), so loading a stale or partial directory
fails with a message that says how to fix it instead of returning wrong image embeddings.

Tracer, saver and loader are injected: :mod:`qwen35_neuron.neuron.vision_encoder` passes the SDK's,
tests pass plain TorchScript ones, and everything else here is exercised on a CPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from ..config import VisionConfig
from ..errors import Qwen35Error
from .packing import PackedImages, check_buckets, pack_images
from .preprocess import ImageProcessorConfig, image_grid
from .tower import patch_dim

FORMAT = "qwen35-neuron-vision-tower/1"
MANIFEST_NAME = "vision_manifest.json"
INPUT_NAMES = ("patches", "pos_index", "pos_weight", "cos", "sin", "attention_bias")
DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
               "int64": torch.int64, "int32": torch.int32}
SDK_PACKAGES = ("torch", "torch-neuronx", "neuronx-cc", "libneuronxla")
RECOMPILE = "recompile with compile_scripts/compile_vision.py"

Tracer = Callable[[nn.Module, tuple[torch.Tensor, ...]], Any]  # (tower, example inputs) -> traced module
Saver = Callable[[Any, str], None]
Loader = Callable[[str], Callable[..., torch.Tensor]]
Progress = Callable[[str], None]


class CompiledVisionError(Qwen35Error):
    """A compiled vision-tower directory is missing, partial, stale or asked for a bucket it lacks."""


# ---- names, dtypes, hashes -------------------------------------------------------------------


def bucket_file_name(bucket: int) -> str:
    return f"vision_tower_{int(bucket)}.pt"


def dtype_name(dtype: torch.dtype | str) -> str:
    if isinstance(dtype, str):
        if dtype not in DTYPE_NAMES:
            raise CompiledVisionError(f"dtype {dtype!r} is not supported: choose one of {sorted(DTYPE_NAMES)}")
        return dtype
    for name, value in DTYPE_NAMES.items():
        if value == dtype:
            return name
    raise CompiledVisionError(f"dtype {dtype} is not supported: choose one of {sorted(DTYPE_NAMES)}")


def vision_config_hash(config: VisionConfig, dtype: torch.dtype | str) -> str:
    """Short stable digest of everything the traced graph's shapes and numerics depend on."""
    doc = {"format": FORMAT, "vision": dataclasses.asdict(config), "dtype": dtype_name(dtype)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def weights_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Digest of names, shapes, dtypes and bytes: the weights are baked into each compiled graph."""
    hasher = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().contiguous().cpu()
        hasher.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return hasher.hexdigest()[:16]


def sdk_versions(packages: Iterable[str] = SDK_PACKAGES) -> dict[str, str | None]:
    """Installed versions (None when absent), read from package metadata without importing the SDK."""
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


# ---- bucket choice ---------------------------------------------------------------------------


def round_up(value: int, unit: int) -> int:
    return -(-int(value) // unit) * unit


def _alignment(processor: ImageProcessorConfig, align: int | None) -> int:
    unit = processor.merge_size ** 2
    align = unit if align is None else int(align)
    if align <= 0 or align % unit:
        raise CompiledVisionError(f"bucket alignment {align} must be a positive multiple of merge_size**2 = {unit}")
    return align


def image_patch_count(height: int, width: int, processor: ImageProcessorConfig) -> int:
    """Patches an image of ``height x width`` pixels becomes after preprocessing (smart_resize)."""
    t, h, w = image_grid(height, width, processor)
    return t * h * w


def buckets_for_images(sizes: Iterable[tuple[int, int]], processor: ImageProcessorConfig,
                       align: int | None = None) -> tuple[int, ...]:
    """One bucket per distinct (aligned) patch count of the given (height, width) image sizes."""
    unit = _alignment(processor, align)
    buckets = {round_up(image_patch_count(h, w, processor), unit) for h, w in sizes}
    if not buckets:
        raise CompiledVisionError("no image sizes given: pass at least one HEIGHTxWIDTH")
    return tuple(sorted(buckets))


def buckets_for_pixel_limit(processor: ImageProcessorConfig, max_pixels: int | None = None, count: int = 3,
                            align: int | None = None) -> tuple[int, ...]:
    """``count`` buckets, each a quarter of the next, the largest holding an image of ``max_pixels``.

    ``max_pixels`` defaults to the processor's. smart_resize can exceed the pixel limit slightly for
    aspect ratios near its 200:1 cap; size those from the actual images with :func:`buckets_for_images`.
    """
    unit = _alignment(processor, align)
    limit = processor.max_pixels if max_pixels is None else int(max_pixels)
    if count < 1 or limit < 1:
        raise CompiledVisionError(f"need count >= 1 and max_pixels >= 1, got count={count}, max_pixels={limit}")
    largest = round_up(max(limit // processor.patch_size ** 2, 1), unit)
    return tuple(sorted({max(unit, round_up(largest // 4 ** k, unit)) for k in range(count)}))


# ---- example inputs --------------------------------------------------------------------------


def example_grid(bucket: int, merge: int) -> tuple[int, int, int]:
    """A near-square single-frame grid of exactly ``bucket`` patches (bucket a multiple of merge**2)."""
    tokens = bucket // (merge * merge)
    rows = max(d for d in range(1, math.isqrt(tokens) + 1) if tokens % d == 0)
    return 1, rows * merge, tokens // rows * merge


def example_pack(config: VisionConfig, bucket: int, dtype: torch.dtype = torch.bfloat16,
                 seed: int = 0) -> PackedImages:
    """A bucket filled by one seeded random image, built by the same packing code requests use."""
    check_buckets([bucket], config)
    grid = example_grid(bucket, config.spatial_merge_size)
    pixels = torch.randn(bucket, patch_dim(config), generator=torch.Generator().manual_seed(seed))
    return pack_images([pixels], [grid], bucket, config, dtype=dtype)


def mixed_pack(config: VisionConfig, bucket: int, dtype: torch.dtype = torch.float32, seed: int = 1) -> PackedImages:
    """Two seeded images (about a half and a quarter of the bucket) plus padding: the case that
    exercises the block-diagonal mask, for checking a compiled tower against the eager one."""
    unit = config.spatial_merge_size ** 2
    tokens = bucket // unit
    counts = [c for c in (max(1, tokens // 2), tokens // 4) if c > 0]
    grids = [example_grid(c * unit, config.spatial_merge_size) for c in counts]
    generator = torch.Generator().manual_seed(seed)
    pixels = [torch.randn(c * unit, patch_dim(config), generator=generator) for c in counts]
    return pack_images(pixels, grids, bucket, config, dtype=dtype)


def real_rows(pack: PackedImages, merged: torch.Tensor) -> torch.Tensor:
    """The output rows that belong to images (padding rows dropped), concatenated."""
    return torch.cat(pack.split_output(merged), dim=0)


def tensor_spec(name: str, tensor: torch.Tensor) -> dict[str, Any]:
    return {"name": name, "shape": list(tensor.shape), "dtype": dtype_name(tensor.dtype)}


# ---- manifest --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VisionManifest:
    """What a compiled directory holds and what it was built for."""

    buckets: tuple[int, ...]
    dtype: str
    config_hash: str
    vision_config: dict[str, Any]
    inputs: dict[int, list[dict[str, Any]]]  # bucket -> tensor specs in forward order
    outputs: dict[int, dict[str, Any]]
    weights_digest: str | None = None
    sdk_versions: dict[str, str | None] = dataclasses.field(default_factory=dict)
    backend: str = "neuron"
    compiler_args: str | None = None
    format: str = FORMAT

    def to_json(self) -> str:
        doc = dataclasses.asdict(self)
        doc["files"] = {str(b): bucket_file_name(b) for b in self.buckets}
        doc["inputs"] = {str(b): v for b, v in self.inputs.items()}
        doc["outputs"] = {str(b): v for b, v in self.outputs.items()}
        return json.dumps(doc, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "manifest") -> "VisionManifest":
        try:
            doc = json.loads(text)
            if doc.get("format") != FORMAT:
                raise CompiledVisionError(f"{where} has format {doc.get('format')!r}, expected {FORMAT!r}: {RECOMPILE}")
            return cls(buckets=tuple(int(b) for b in doc["buckets"]), dtype=doc["dtype"],
                       config_hash=doc["config_hash"], vision_config=dict(doc["vision_config"]),
                       inputs={int(b): v for b, v in doc["inputs"].items()},
                       outputs={int(b): v for b, v in doc["outputs"].items()},
                       weights_digest=doc.get("weights_digest"), sdk_versions=dict(doc.get("sdk_versions", {})),
                       backend=doc.get("backend", "neuron"), compiler_args=doc.get("compiler_args"))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise CompiledVisionError(f"{where} is unreadable ({err!r}): {RECOMPILE}") from err


def read_manifest(out_dir: str | Path) -> VisionManifest:
    path = Path(out_dir) / MANIFEST_NAME
    if not path.is_file():
        raise CompiledVisionError(
            f"{out_dir} holds no {MANIFEST_NAME}: compile the vision tower first "
            f"(python compile_scripts/compile_vision.py MODEL_DIR {out_dir})"
        )
    return VisionManifest.from_json(path.read_text(), where=str(path))


# ---- compile driver --------------------------------------------------------------------------


def compile_towers(tower: nn.Module, config: VisionConfig, buckets: Sequence[int], out_dir: str | Path,
                   tracer: Tracer, *, dtype: torch.dtype | str = torch.bfloat16, saver: Saver = torch.jit.save,
                   backend: str = "neuron", compiler_args: str | None = None, versions: dict | None = None,
                   progress: Progress | None = None) -> VisionManifest:
    """Trace ``tower`` (cast to ``dtype`` in place) once per bucket; write the files, the manifest last.

    The manifest is written only after every bucket file, so a crash never leaves a directory that
    loads: an old manifest is removed first.
    """
    say = progress or (lambda _msg: None)
    buckets = check_buckets(buckets, config)
    torch_dtype = DTYPE_NAMES[dtype_name(dtype)]
    tower = tower.to(torch_dtype).eval()  # in place: no second copy of the weights
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    inputs: dict[int, list[dict[str, Any]]] = {}
    outputs: dict[int, dict[str, Any]] = {}
    for index, bucket in enumerate(buckets, 1):
        example = example_pack(config, bucket, torch_dtype).tower_inputs()
        say(f"[{index}/{len(buckets)}] tracing the vision tower for {bucket} patches ({dtype_name(dtype)})")
        with torch.no_grad():
            traced = tracer(tower, example)
        saver(traced, str(out / bucket_file_name(bucket)))
        inputs[bucket] = [tensor_spec(n, t) for n, t in zip(INPUT_NAMES, example, strict=True)]
        outputs[bucket] = {"name": "merged", "shape": [bucket // config.spatial_merge_size ** 2,
                                                       config.out_hidden_size], "dtype": dtype_name(dtype)}
        say(f"[{index}/{len(buckets)}] wrote {out / bucket_file_name(bucket)}")
    manifest = VisionManifest(
        buckets=buckets, dtype=dtype_name(dtype), config_hash=vision_config_hash(config, dtype),
        vision_config=dataclasses.asdict(config), inputs=inputs, outputs=outputs,
        weights_digest=weights_digest(tower.state_dict()),
        sdk_versions=dict(versions if versions is not None else sdk_versions()),
        backend=backend, compiler_args=compiler_args,
    )
    (out / MANIFEST_NAME).write_text(manifest.to_json())
    say(f"wrote {out / MANIFEST_NAME} (buckets {list(buckets)}, config hash {manifest.config_hash})")
    return manifest


# ---- loading and running ---------------------------------------------------------------------


def _config_difference(stored: Mapping[str, Any], expected: VisionConfig) -> str:
    now = dataclasses.asdict(expected)
    diffs = [f"{k}: compiled {stored.get(k)!r}, model {now.get(k)!r}"
             for k in sorted(set(stored) | set(now)) if stored.get(k) != now.get(k)]
    return "; ".join(diffs) or "same fields, different dtype or format"


def check_manifest(manifest: VisionManifest, out_dir: str | Path, expected: VisionConfig | None = None,
                   run_buckets: Sequence[int] | None = None, expected_weights: str | None = None) -> None:
    """Raise :class:`CompiledVisionError` if the directory does not fit the model and run settings."""
    model_hash = None if expected is None else vision_config_hash(expected, manifest.dtype)
    if model_hash is not None and model_hash != manifest.config_hash:
        raise CompiledVisionError(
            f"the vision tower in {out_dir} was compiled for another vision config (hash {manifest.config_hash}, "
            f"model {model_hash}; {_config_difference(manifest.vision_config, expected)}): {RECOMPILE}"
        )
    if expected_weights is not None and manifest.weights_digest != expected_weights:
        raise CompiledVisionError(
            f"the vision tower in {out_dir} was compiled from other weights (digest {manifest.weights_digest}, "
            f"checkpoint {expected_weights}): {RECOMPILE}"
        )
    missing = [b for b in manifest.buckets if not (Path(out_dir) / bucket_file_name(b)).is_file()]
    if missing:
        files = ", ".join(bucket_file_name(b) for b in missing)
        raise CompiledVisionError(f"{out_dir} lacks {files} listed in its manifest: {RECOMPILE} --buckets "
                                  f"{' '.join(str(b) for b in manifest.buckets)}")
    if run_buckets is not None:
        absent = sorted(set(int(b) for b in run_buckets) - set(manifest.buckets))
        if absent:
            raise CompiledVisionError(
                f"vision buckets {absent} of the run settings were not compiled in {out_dir} (it has "
                f"{list(manifest.buckets)}): set RunConfig.vision_buckets to a subset of them or {RECOMPILE} "
                f"--buckets {' '.join(str(b) for b in sorted(set(manifest.buckets) | set(absent)))}"
            )


class CompiledTower:
    """One bucket's compiled graph: checks shapes and casts inputs to the dtypes it was traced with.

    Traced graphs accept exactly their example dtypes; the orchestrator packs images in the text
    engine's dtype, so casting here lets a bf16 tower serve an fp32 engine (one rounding, as packing
    directly in bf16 would do).
    """

    def __init__(self, module: Callable[..., torch.Tensor], specs: Sequence[Mapping[str, Any]], bucket: int) -> None:
        self.module, self.specs, self.bucket = module, list(specs), bucket

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.specs):
            raise CompiledVisionError(f"the compiled vision tower takes {len(self.specs)} inputs, got {len(inputs)}")
        cast = []
        for tensor, spec in zip(inputs, self.specs):
            if list(tensor.shape) != list(spec["shape"]):
                raise CompiledVisionError(
                    f"vision input {spec['name']} has shape {list(tensor.shape)} but the tower for bucket "
                    f"{self.bucket} was compiled for {spec['shape']}: {RECOMPILE}"
                )
            cast.append(tensor.to(DTYPE_NAMES[spec["dtype"]]).contiguous())
        return self.module(*cast)


class CompiledVisionTowers:
    """All compiled buckets of a directory. ``towers(bucket)`` gives the tower (the shape
    :func:`qwen35_neuron.vl.per_bucket_runner` expects); ``towers.run(pack)`` is a ready VisionRunner."""

    def __init__(self, manifest: VisionManifest, towers: Mapping[int, CompiledTower], out_dir: str | Path) -> None:
        self.manifest, self.towers, self.out_dir = manifest, dict(towers), str(out_dir)

    @property
    def buckets(self) -> tuple[int, ...]:
        return self.manifest.buckets

    def __call__(self, bucket: int) -> CompiledTower:
        tower = self.towers.get(int(bucket))
        if tower is None:
            raise CompiledVisionError(
                f"no compiled vision tower for a bucket of {bucket} patches in {self.out_dir} (compiled: "
                f"{list(self.buckets)}): pack images with RunConfig.vision_buckets = {list(self.buckets)} or "
                f"{RECOMPILE} --buckets {' '.join(str(b) for b in sorted(set(self.buckets) | {int(bucket)}))}"
            )
        return tower

    @torch.no_grad()
    def run(self, pack: PackedImages) -> torch.Tensor:
        """VisionRunner: the whole bucket's merged tokens for one pack."""
        return self(pack.bucket)(*pack.tower_inputs())


def load_towers(out_dir: str | Path, loader: Loader, *, expected: VisionConfig | None = None,
                run_buckets: Sequence[int] | None = None, expected_weights: str | None = None,
                current_versions: Mapping[str, str | None] | None = None) -> CompiledVisionTowers:
    """Read the manifest, check it against the model and run settings, and load every bucket file."""
    manifest = read_manifest(out_dir)
    check_manifest(manifest, out_dir, expected, run_buckets, expected_weights)
    _warn_on_version_change(manifest, current_versions)
    towers = {b: CompiledTower(loader(str(Path(out_dir) / bucket_file_name(b))), manifest.inputs[b], b)
              for b in manifest.buckets}
    return CompiledVisionTowers(manifest, towers, out_dir)


def _warn_on_version_change(manifest: VisionManifest, current: Mapping[str, str | None] | None) -> None:
    if current is None:
        return
    changed = [f"{p} {v} -> {current.get(p)}" for p, v in manifest.sdk_versions.items()
               if v is not None and p in current and current.get(p) != v]
    if changed:
        warnings.warn(f"the vision tower was compiled with other SDK versions ({', '.join(changed)}); "
                      f"if loading or running fails, {RECOMPILE}", stacklevel=3)
