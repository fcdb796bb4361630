"""Constants and helpers shared by the VL tests (fixtures live in conftest.py)."""

from __future__ import annotations

import torch

from qwen35_neuron.config import RunConfig
from qwen35_neuron.testing.tiny import TINY_EOS_TOKEN_IDS
from qwen35_neuron.vl import VLRequest

IMAGE, START, END = 250, 252, 253  # the tiny vocabulary's image placeholder and vision start/end ids
NEW_TOKENS = 12
EOS = tuple(TINY_EOS_TOKEN_IDS)
PIXEL_LIMITS = (64, 4096)
# (height, width) in pixels; patch 4, merge 2 -> wide: grid (1, 4, 6) = 24 patches = 6 image tokens.
IMAGE_SIZES = {"wide": (16, 24), "wide2": (16, 24), "tall": (24, 16), "square": (16, 16), "big": (48, 48)}
VISION_BUCKETS = (32, 64)  # "big" (144 patches) exceeds the largest one
RUN = dict(batch_size=4, context_buckets=(16, 32), max_seq_len=64, gdr_chunk_size=8)
# fp32 logits: these cases differ by <1e-4; transformers' own fp32 run differs from its fp64 run by up to
# ~1e-3 on some steps of other random tiny cases (checked by hand), hence a bound above 1e-4.
LOGIT_TOL = 5e-4

# Prompts: one placeholder per image, wrapped in vision start/end as Qwen's chat template does.
CASES = {
    "no_image": ([11, 42, 7, 99, 3], []),
    "one_image": ([11, START, IMAGE, END, 42, 7], ["wide"]),
    "two_images": ([5, START, IMAGE, END, 17, START, IMAGE, END, 9], ["tall", "square"]),
}


def run_config(**overrides) -> RunConfig:
    return RunConfig(**{**RUN, "vision_buckets": VISION_BUCKETS, **overrides})


def request(case: str, images: dict[str, str]) -> VLRequest:
    prompt, names = CASES[case]
    return VLRequest(list(prompt), [images[n] for n in names])


def max_logit_diff(ours: list[torch.Tensor], reference: torch.Tensor) -> float:
    """Largest |difference| over the steps both runs made (a row may stop at EOS)."""
    steps = min(len(ours), reference.shape[0])
    assert steps >= 1
    return (torch.stack(ours[:steps]) - reference[:steps]).abs().max().item()
