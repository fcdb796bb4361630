"""Backend-neutral vision path: preprocessing, the ViT tower, patch packing and mRoPE ids.

Host side (data-dependent, plain Python/numpy): :mod:`preprocess`, :mod:`grid`,
:mod:`attention_mask`, :mod:`packing`, :mod:`rope_index`. Graph side (static per bucket):
:class:`VisionTower`.
"""

from .attention_mask import block_diagonal_bias, segment_ids
from .encoder import encode_images
from .grid import image_geometry, num_merged_tokens, num_patches
from .packing import PackedImages, check_buckets, choose_bucket, pack_images, pack_request, plan_packs
from .preprocess import (
    ImageProcessorConfig,
    ProcessedImages,
    image_grid,
    load_image,
    load_image_processor_config,
    parse_image_processor_config,
    preprocess_images,
    smart_resize,
)
from .rope_index import decode_position_ids, mrope_position_ids, mrope_position_ids_for
from .tower import VisionTower, vision_state_dict_from_hf

__all__ = [
    "ImageProcessorConfig",
    "PackedImages",
    "ProcessedImages",
    "VisionTower",
    "block_diagonal_bias",
    "check_buckets",
    "choose_bucket",
    "decode_position_ids",
    "encode_images",
    "image_geometry",
    "image_grid",
    "load_image",
    "load_image_processor_config",
    "mrope_position_ids",
    "mrope_position_ids_for",
    "num_merged_tokens",
    "num_patches",
    "pack_images",
    "pack_request",
    "parse_image_processor_config",
    "plan_packs",
    "preprocess_images",
    "segment_ids",
    "smart_resize",
    "vision_state_dict_from_hf",
]
