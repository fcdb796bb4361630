"""Fixtures for the compiled vision-tower tests: the tiny composite checkpoint with a small-image
preprocessor config, seeded PNG images, and a CPU-traced (TorchScript) compiled directory."""

from __future__ import annotations

import shutil

import pytest

from qwen35_neuron.config import load_model_config
from qwen35_neuron.testing.images import write_random_images
from qwen35_neuron.vision.compiled import compile_towers
from qwen35_neuron.vl import processor_for_vision, write_preprocessor_config
from qwen35_neuron.vl.vision_runner import load_vision_tower
from nv_helpers import BUCKETS, IMAGE_SIZES, PIXEL_LIMITS, jit_tracer


@pytest.fixture(scope="session")
def nv_model_dir(tiny_dir, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("nv-ckpt") / "model"
    shutil.copytree(tiny_dir, path)
    write_preprocessor_config(path, processor_for_vision(load_model_config(path).vision, *PIXEL_LIMITS))
    return str(path)


@pytest.fixture(scope="session")
def nv_images(tmp_path_factory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("nv-images")
    paths = write_random_images(directory, IMAGE_SIZES, seed=11)
    return paths


@pytest.fixture(scope="session")
def jit_compiled_dir(nv_model_dir, tmp_path_factory) -> str:
    """The checkpoint's tower 'compiled' per bucket with torch.jit.trace (fp32), saved like the Neuron path."""
    out = tmp_path_factory.mktemp("nv-compiled") / "vision"
    config = load_model_config(nv_model_dir)
    compile_towers(load_vision_tower(nv_model_dir, config), config.vision, BUCKETS, out, jit_tracer,
                   dtype="float32", backend="cpu-jit")
    return str(out)
