"""Constants and helpers shared by the compiled-vision tests (fixtures live in conftest.py)."""

from __future__ import annotations

import torch

from qwen35_neuron.config import RunConfig, VisionConfig
from qwen35_neuron.vl import VLRequest

IMAGE, START, END = 250, 252, 253  # the tiny vocabulary's image placeholder and vision start/end ids
PIXEL_LIMITS = (64, 4096)  # patch 4: an image is at most 256 patches
IMAGE_SIZES = {"wide": (16, 24), "tall": (24, 16), "square": (16, 16)}  # 24, 24 and 16 patches
BUCKETS = (32, 64)
NEW_TOKENS = 10
RUN = dict(batch_size=2, context_buckets=(16, 32), max_seq_len=64, gdr_chunk_size=8, vision_buckets=BUCKETS)
CASES = {
    "one_image": ([11, START, IMAGE, END, 42, 7], ["wide"]),
    "two_images": ([5, START, IMAGE, END, 17, START, IMAGE, END, 9], ["tall", "square"]),
}
# The tiny tower of tests/vision (16 position embeddings, as in the tiny checkpoints), built without a checkpoint.
TINY_VISION = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, in_channels=3, patch_size=4,
                   temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=64, num_position_embeddings=16)
WEIGHT_SPREAD = 0.15


def run_config(**overrides) -> RunConfig:
    return RunConfig(**{**RUN, **overrides})


def request(case: str, images: dict[str, str]) -> VLRequest:
    prompt, names = CASES[case]
    return VLRequest(list(prompt), [images[n] for n in names])


def jit_tracer(tower, example):
    """The CPU stand-in for torch_neuronx.trace: a TorchScript graph with the same .pt round trip."""
    return torch.jit.trace(tower, example, check_trace=False)


def seeded_tower(config: VisionConfig, seed: int = 5):
    """A VisionTower with widened seeded weights (norm weights around 1), fp32, eval."""
    from qwen35_neuron.vision import VisionTower

    torch.manual_seed(seed)
    tower = VisionTower(config).eval()
    with torch.no_grad():
        for name, param in tower.named_parameters():
            centre = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            param.copy_(centre + WEIGHT_SPREAD * torch.randn_like(param))
    return tower


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours.float() - reference.float()).abs().max() / reference.float().abs().max()).item()
