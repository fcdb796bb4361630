"""Checkpoint layer: lazy safetensors reading, key layouts, the tensor gate, canonical loading.

Typical use::

    report = check_checkpoint(model_dir)       # headers only; names every problem
    report.raise_if_failed()
    for name, tensor in iter_text_tensors(model_dir):   # canonical names, fused experts
        ...
"""

from .expected import (
    expected_mtp_shapes,
    expected_text_shapes,
    expected_vision_shapes,
    expert_part_shapes,
)
from .gate import GateReport, TensorProblem, check_checkpoint
from .layout import (
    MTP,
    TEXT,
    VISION,
    CheckpointLayout,
    DirectSource,
    StackedExperts,
    classify_key,
    read_source,
)
from .loader import (
    iter_text_tensors,
    iter_vision_tensors,
    load_mtp_state_dict,
    load_text_state_dict,
    load_vision_state_dict,
)
from .reader import CheckpointReader, TensorInfo, read_safetensors_header

__all__ = [
    "MTP",
    "TEXT",
    "VISION",
    "CheckpointLayout",
    "CheckpointReader",
    "DirectSource",
    "GateReport",
    "StackedExperts",
    "TensorInfo",
    "TensorProblem",
    "check_checkpoint",
    "classify_key",
    "expected_mtp_shapes",
    "expected_text_shapes",
    "expected_vision_shapes",
    "expert_part_shapes",
    "iter_text_tensors",
    "iter_vision_tensors",
    "load_mtp_state_dict",
    "load_text_state_dict",
    "load_vision_state_dict",
    "read_safetensors_header",
    "read_source",
]
