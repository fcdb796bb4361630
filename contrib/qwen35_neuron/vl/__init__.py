"""Vision-language host side, for any backend: prompts with images in, graph inputs and tokens out.

Host side: :mod:`placeholders` (one placeholder per image, expanded to its token count),
:mod:`request` (check and lay out a batch), :mod:`scatter` (host-built indices, static-shape
merge of image embeddings), :mod:`processor_file` (write a preprocessor_config.json). Injection point for a backend's vision tower: :mod:`vision_runner`.
Driver: :mod:`orchestrator` (:func:`generate_vl`, over a :class:`VLSession`). The sessions are the
backends': ``qwen35_neuron.runtime.vl_session.VisionLanguageSession`` (CPU) and
``qwen35_neuron.neuron.vl_session.NeuronVLSession`` (Neuron).
"""

from .orchestrator import VLSession, generate_vl, scatter_images
from .placeholders import (
    IMAGE_PAD_TEXT,
    assign_images_in_order,
    check_image_count,
    count_placeholders,
    encode_with_placeholders,
    expand_placeholders,
)
from .processor_file import processor_for_vision, write_preprocessor_config
from .request import PreparedBatch, VLRequest, prepare_batch
from .scatter import ScatterPlan, build_scatter_plan, merge_image_embeddings, table_offsets
from .vision_runner import VisionRunner, load_vision_tower, per_bucket_runner, run_packs, tower_runner

__all__ = [
    "IMAGE_PAD_TEXT",
    "PreparedBatch",
    "ScatterPlan",
    "VLRequest",
    "VLSession",
    "VisionRunner",
    "assign_images_in_order",
    "build_scatter_plan",
    "check_image_count",
    "count_placeholders",
    "encode_with_placeholders",
    "expand_placeholders",
    "generate_vl",
    "load_vision_tower",
    "merge_image_embeddings",
    "per_bucket_runner",
    "prepare_batch",
    "processor_for_vision",
    "run_packs",
    "scatter_images",
    "table_offsets",
    "tower_runner",
    "write_preprocessor_config",
]
