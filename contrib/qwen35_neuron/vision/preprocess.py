"""Image preprocessing for the Qwen3.5 vision tower, in PIL + numpy (no torchvision).

Steps, equal to transformers' Qwen2-VL image processor (PIL backend) that Qwen3.5 uses:
RGB conversion (transparency composited on white), bicubic resize to a size whose sides are
multiples of patch*merge with the pixel count inside [min_pixels, max_pixels] (``smart_resize``),
rescale by 1/255, normalise by mean/std, then cut into patches in merge-block order, each patch
flattened as [C, T, P, P] with the single frame repeated over the temporal patch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from ..config import VisionConfig
from ..config.fields import bool_field, float_field, float_list_field, int_field, mapping_field
from ..errors import InputError, UnsupportedConfigError

try:  # PIL is a runtime dependency of the vision path only
    from PIL import Image, UnidentifiedImageError
except ImportError:  # pragma: no cover - reported when an image is actually processed
    Image = None  # type: ignore[assignment]
    UnidentifiedImageError = OSError  # type: ignore[assignment,misc]

ImageLike = Union[str, Path, "Image.Image", np.ndarray]
MAX_ASPECT_RATIO = 200


@dataclass(frozen=True)
class ImageProcessorConfig:
    """What ``preprocessor_config.json`` says; defaults are those of the published Qwen3.5 checkpoints."""

    patch_size: int = 16
    temporal_patch_size: int = 2
    merge_size: int = 2
    min_pixels: int = 65536  # 256 * 256
    max_pixels: int = 16777216  # 4096 * 4096
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)
    rescale_factor: float = 1 / 255
    resample: int = 3  # PIL bicubic
    do_resize: bool = True
    do_rescale: bool = True
    do_normalize: bool = True

    @property
    def factor(self) -> int:
        """Side lengths must be multiples of this (one merged token covers factor x factor pixels)."""
        return self.patch_size * self.merge_size

    def with_pixel_limits(self, min_pixels: int | None = None, max_pixels: int | None = None) -> "ImageProcessorConfig":
        """New limits; a limit not given follows the other one when they would cross."""
        if min_pixels and max_pixels is None:
            max_pixels = max(self.max_pixels, min_pixels)
        if max_pixels and min_pixels is None:
            min_pixels = min(self.min_pixels, max_pixels)
        limits = replace(self, min_pixels=min_pixels or self.min_pixels, max_pixels=max_pixels or self.max_pixels)
        if not 0 < limits.min_pixels <= limits.max_pixels:
            raise InputError(f"pixel limits must satisfy 0 < min_pixels <= max_pixels, got min {limits.min_pixels} "
                             f"and max {limits.max_pixels}: fix --min-pixels / --max-pixels")
        return limits


@dataclass(frozen=True)
class ProcessedImages:
    """Patches of all images, concatenated, and one (t, h, w) patch grid per image."""

    pixel_values: np.ndarray  # [sum t*h*w, C*T*P*P] float32
    grids: tuple[tuple[int, int, int], ...]

    def num_tokens(self, merge_size: int) -> list[int]:
        """Placeholder tokens each image needs in the prompt."""
        return [t * h * w // (merge_size * merge_size) for t, h, w in self.grids]


def load_image_processor_config(model_dir: str | Path, vision: VisionConfig | None = None) -> ImageProcessorConfig:
    """Read ``preprocessor_config.json`` (or ``processor_config.json``'s image section) of a model dir."""
    model_dir = Path(model_dir)
    raw: dict[str, Any] = {}
    for name, section in (("preprocessor_config.json", None), ("processor_config.json", "image_processor")):
        path = model_dir / name
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
                raise UnsupportedConfigError(f"{path} is not valid JSON: {err}") from err
            if not isinstance(data, dict):
                raise UnsupportedConfigError(f"{path} must hold a JSON object, not {type(data).__name__}")
            raw = mapping_field(data, section, where=name) if section else data
            if raw:
                break
    if not raw and vision is not None:  # no processor file: the geometry follows the tower itself
        raw = {"patch_size": vision.patch_size, "temporal_patch_size": vision.temporal_patch_size,
               "merge_size": vision.spatial_merge_size}
    config = parse_image_processor_config(raw)
    if vision is not None:
        _check_against_vision(config, vision)
    return config


def parse_image_processor_config(raw: dict[str, Any]) -> ImageProcessorConfig:
    """Accepts the ``size`` dict (shortest_edge/longest_edge = pixel limits) and legacy min/max_pixels."""
    where = "preprocessor_config.json"
    size = mapping_field(raw, "size", where=where)
    defaults = ImageProcessorConfig()
    min_pixels = int_field(size, "shortest_edge", defaults.min_pixels, where=where + " size")
    max_pixels = int_field(size, "longest_edge", defaults.max_pixels, where=where + " size")
    config = ImageProcessorConfig(
        patch_size=int_field(raw, "patch_size", defaults.patch_size, where=where),
        temporal_patch_size=int_field(raw, "temporal_patch_size", defaults.temporal_patch_size, where=where),
        merge_size=int_field(raw, "merge_size", defaults.merge_size, where=where),
        min_pixels=int_field(raw, "min_pixels", min_pixels, where=where),
        max_pixels=int_field(raw, "max_pixels", max_pixels, where=where),
        image_mean=float_list_field(raw, "image_mean", defaults.image_mean, length=3, where=where),
        image_std=float_list_field(raw, "image_std", defaults.image_std, length=3, positive=True, where=where),
        rescale_factor=float_field(raw, "rescale_factor", defaults.rescale_factor, minimum=0.0, where=where),
        resample=int_field(raw, "resample", defaults.resample, minimum=0, where=where),
        do_resize=bool_field(raw, "do_resize", True, where=where),
        do_rescale=bool_field(raw, "do_rescale", True, where=where),
        do_normalize=bool_field(raw, "do_normalize", True, where=where),
    )
    if config.min_pixels > config.max_pixels:
        raise UnsupportedConfigError(f"{where}: min_pixels {config.min_pixels} exceeds max_pixels {config.max_pixels}")
    return config


def _check_against_vision(config: ImageProcessorConfig, vision: VisionConfig) -> None:
    pairs = [("patch_size", config.patch_size, vision.patch_size),
             ("temporal_patch_size", config.temporal_patch_size, vision.temporal_patch_size),
             ("merge_size", config.merge_size, vision.spatial_merge_size)]
    for name, ours, model in pairs:
        if ours != model:
            raise UnsupportedConfigError(
                f"preprocessor {name}={ours} disagrees with the vision tower's {model}: fix preprocessor_config.json"
            )


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Target (height, width): multiples of ``factor``, area within the limits, aspect ratio ~kept."""
    if height < 1 or width < 1:
        raise InputError(f"image of size {width}x{height} is empty: pass an image with pixels")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise InputError(
            f"image aspect ratio {max(height, width) / min(height, width):.1f} exceeds {MAX_ASPECT_RATIO}: "
            "crop or pad the image to a less extreme shape"
        )
    new_h = round(height / factor) * factor
    new_w = round(width / factor) * factor
    if new_h * new_w > max_pixels:
        shrink = math.sqrt(height * width / max_pixels)
        new_h = max(factor, math.floor(height / shrink / factor) * factor)
        new_w = max(factor, math.floor(width / shrink / factor) * factor)
    elif new_h * new_w < min_pixels:
        grow = math.sqrt(min_pixels / (height * width))
        new_h = math.ceil(height * grow / factor) * factor
        new_w = math.ceil(width * grow / factor) * factor
    return new_h, new_w


def image_grid(height: int, width: int, config: ImageProcessorConfig) -> tuple[int, int, int]:
    """The (t, h, w) patch grid an image of this size gets, without touching pixels."""
    if config.do_resize:
        height, width = smart_resize(height, width, config.factor, config.min_pixels, config.max_pixels)
    return 1, height // config.patch_size, width // config.patch_size


def load_image(source: ImageLike) -> "Image.Image":
    """Open a path (or take a PIL image / HxWxC uint8 array) as an RGB PIL image."""
    if Image is None:
        raise InputError("image input needs Pillow: pip install pillow")
    if isinstance(source, np.ndarray):
        channels_ok = source.ndim == 2 or (source.ndim == 3 and source.shape[2] in (1, 3, 4))
        if source.dtype != np.uint8 or not channels_ok:
            raise InputError(
                f"image array of dtype {source.dtype} and shape {source.shape} is not supported: pass uint8 "
                "HxW, HxWx1, HxWx3 or HxWx4"
            )
        source = Image.fromarray(source[..., 0] if source.ndim == 3 and source.shape[2] == 1 else source)
    elif isinstance(source, (str, Path)):
        try:
            with Image.open(source) as opened:
                opened.load()
                source = opened.copy()
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as err:
            raise InputError(f"cannot read image {str(source)!r}: {err}; pass a readable PNG/JPEG/WebP file") from err
    elif not isinstance(source, Image.Image):
        raise InputError(f"unsupported image input of type {type(source).__name__}: pass a path, PIL image or array")
    return _to_rgb(source)


def _to_rgb(image: "Image.Image") -> "Image.Image":
    """RGB; transparent pixels are composited on white (so they do not turn black)."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _normalised_pixels(image: "Image.Image", config: ImageProcessorConfig) -> np.ndarray:
    """[C, H, W] float32 after resize, rescale and normalise (same float steps as HF)."""
    if config.do_resize:
        height, width = smart_resize(image.height, image.width, config.factor, config.min_pixels, config.max_pixels)
        if (height, width) != (image.height, image.width):
            image = image.resize((width, height), resample=config.resample)
    pixels = np.asarray(image)
    if config.do_rescale:
        pixels = (pixels.astype(np.float64) * config.rescale_factor).astype(np.float32)
    pixels = pixels.astype(np.float32)
    if config.do_normalize:
        mean = np.asarray(config.image_mean, dtype=np.float32)
        std = np.asarray(config.image_std, dtype=np.float32)
        pixels = (pixels - mean) / std
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def patchify(pixels: np.ndarray, config: ImageProcessorConfig) -> tuple[np.ndarray, tuple[int, int, int]]:
    """[C, H, W] -> patches [h*w, C*T*P*P] in merge-block order, and the grid (1, h, w)."""
    channels, height, width = pixels.shape
    p, m, t = config.patch_size, config.merge_size, config.temporal_patch_size
    if height % (p * m) or width % (p * m):
        raise InputError(
            f"image of {width}x{height} pixels is not a multiple of patch*merge = {p * m}: enable do_resize"
        )
    gh, gw = height // p, width // p
    blocks = pixels.reshape(channels, gh // m, m, p, gw // m, m, p)
    blocks = blocks.transpose(1, 4, 2, 5, 0, 3, 6)  # block row, block col, in-row, in-col, C, py, px
    frames = np.broadcast_to(blocks[:, :, :, :, :, None], blocks.shape[:5] + (t, p, p))
    return np.ascontiguousarray(frames).reshape(gh * gw, channels * t * p * p), (1, gh, gw)


def preprocess_images(images: Sequence[ImageLike], config: ImageProcessorConfig | None = None) -> ProcessedImages:
    """Load and preprocess images; patches of all images are concatenated in the given order."""
    config = config or ImageProcessorConfig()
    patches, grids = [], []
    for image in images:
        image_patches, grid = patchify(_normalised_pixels(load_image(image), config), config)
        patches.append(image_patches)
        grids.append(grid)
    if not patches:
        dim = 3 * config.temporal_patch_size * config.patch_size ** 2
        return ProcessedImages(np.zeros((0, dim), dtype=np.float32), ())
    return ProcessedImages(np.concatenate(patches, axis=0), tuple(grids))
