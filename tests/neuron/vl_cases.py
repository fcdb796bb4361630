"""Prompts, images and settings of the Neuron VL tests (the real-SDK tier and trn2); fixtures in conftest.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qwen35_neuron.config import RunConfig, load_model_config
from qwen35_neuron.vl import VLRequest, processor_for_vision, write_preprocessor_config

IMAGE, START, END = 250, 252, 253  # the tiny vocabulary's image placeholder and vision start/end ids
PIXEL_LIMITS = (64, 4096)  # patch 4: at most 256 patches per image
# (height, width): wide -> grid (1, 4, 6) = 24 patches = 6 image tokens; tall 6 tokens; square 4 tokens
IMAGE_SIZES = {"wide": (16, 24), "wide2": (16, 24), "tall": (24, 16), "square": (16, 16)}
VISION_BUCKETS = (32, 64)
NEW_TOKENS = 10
CASES = {
    "no_image": ([11, 42, 7, 99, 3], []),
    "one_image": ([11, START, IMAGE, END, 42, 7], ["wide"]),
    "two_images": ([5, START, IMAGE, END, 17, START, IMAGE, END, 9], ["tall", "square"]),
}
MIXED = ["one_image", "no_image", "two_images"]


def request(case: str, images: dict[str, str]) -> VLRequest:
    prompt, names = CASES[case]
    return VLRequest(list(prompt), [images[n] for n in names])


def write_vl_checkpoint(tiny_dir: str, path: Path) -> str:
    """The tiny composite checkpoint plus a small-image preprocessor_config.json."""
    shutil.copytree(tiny_dir, path)
    write_preprocessor_config(path, processor_for_vision(load_model_config(path).vision, *PIXEL_LIMITS))
    return str(path)


def write_images(directory: Path, seed: int = 7) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    paths = {}
    for name, (height, width) in IMAGE_SIZES.items():
        paths[name] = str(directory / f"{name}.png")
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(paths[name])
    return paths


def cpu_run_config(settings) -> RunConfig:
    """The CPU runtime run with the compiled model's rows, buckets and cache length."""
    return RunConfig(batch_size=settings.batch_size, context_buckets=settings.context_buckets,
                     max_seq_len=settings.max_length, dtype=settings.dtype, gdr_chunk_size=settings.gdr_chunk_size,
                     vision_buckets=VISION_BUCKETS)


@pytest.fixture(scope="session")
def neuron_vl_dir(tiny_dir, tmp_path_factory) -> str:
    """The shared tiny checkpoint with a small-image preprocessor config (a fixture of both tiers' conftests)."""
    return write_vl_checkpoint(tiny_dir, tmp_path_factory.mktemp("neuron-vl") / "model")


@pytest.fixture(scope="session")
def neuron_vl_images(tmp_path_factory) -> dict[str, str]:
    return write_images(tmp_path_factory.mktemp("neuron-vl-images"))
