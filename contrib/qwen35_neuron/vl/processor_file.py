"""Write a ``preprocessor_config.json`` for a checkpoint directory.

Published Qwen3.5 checkpoints ship one; tiny test checkpoints (patch 4 instead of 16) need their
own, with pixel limits small enough that a test image stays a handful of patches.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import VisionConfig
from ..vision.preprocess import ImageProcessorConfig


def processor_for_vision(vision: VisionConfig, min_pixels: int, max_pixels: int) -> ImageProcessorConfig:
    """Default Qwen3.5 preprocessing with the tower's patch geometry and the given pixel limits."""
    return ImageProcessorConfig(patch_size=vision.patch_size, temporal_patch_size=vision.temporal_patch_size,
                                merge_size=vision.spatial_merge_size, min_pixels=min_pixels, max_pixels=max_pixels)


def write_preprocessor_config(directory: str | Path, processor: ImageProcessorConfig) -> Path:
    """``preprocessor_config.json`` in the layout transformers' Qwen2-VL image processor writes."""
    doc = {
        "image_processor_type": "Qwen2VLImageProcessor",
        "patch_size": processor.patch_size,
        "temporal_patch_size": processor.temporal_patch_size,
        "merge_size": processor.merge_size,
        "size": {"shortest_edge": processor.min_pixels, "longest_edge": processor.max_pixels},
        "image_mean": list(processor.image_mean),
        "image_std": list(processor.image_std),
        "rescale_factor": processor.rescale_factor,
        "resample": processor.resample,
        "do_resize": processor.do_resize,
        "do_rescale": processor.do_rescale,
        "do_normalize": processor.do_normalize,
    }
    path = Path(directory) / "preprocessor_config.json"
    path.write_text(json.dumps(doc, indent=2))
    return path
