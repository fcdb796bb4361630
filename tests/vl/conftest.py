"""Fixtures for the VL orchestrator tests: the tiny composite checkpoint with a preprocessor config
and a tokenizer, small PNG images, CPU VL sessions, and transformers' greedy references."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qwen35_neuron.config import load_model_config
from qwen35_neuron.runtime.vl_session import load_vl_session
from qwen35_neuron.testing.images import write_random_images
from qwen35_neuron.testing.reference import hf_greedy
from qwen35_neuron.testing.tokenizer import write_tiny_tokenizer
from qwen35_neuron.vision.preprocess import preprocess_images
from qwen35_neuron.vl import processor_for_vision, write_preprocessor_config
from vl_helpers import EOS, IMAGE, IMAGE_SIZES, NEW_TOKENS, PIXEL_LIMITS, request, run_config


@pytest.fixture(scope="session")
def vl_dir(tiny_dir, tmp_path_factory) -> str:
    """The shared tiny checkpoint plus a small-image preprocessor config and a byte tokenizer."""
    path = tmp_path_factory.mktemp("vl-ckpt") / "model"
    shutil.copytree(tiny_dir, path)
    vision = load_model_config(path).vision
    write_preprocessor_config(path, processor_for_vision(vision, *PIXEL_LIMITS))
    write_tiny_tokenizer(path)
    return str(path)


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> dict[str, str]:
    """Seeded random RGB PNGs, plus a file that is not an image."""
    directory = tmp_path_factory.mktemp("vl-images")
    paths = write_random_images(directory, IMAGE_SIZES, seed=7)
    paths["broken"] = str(directory / "broken.png")
    Path(paths["broken"]).write_bytes(b"this is not a PNG")
    return paths


@pytest.fixture(scope="session")
def make_vl(vl_dir):
    def make(**overrides):
        return load_vl_session(vl_dir, run_config(**overrides))[1]

    return make


@pytest.fixture(scope="session")
def vl(make_vl):
    """One shared CPU VL session (generate_vl resets it; tests that prefill rows make their own)."""
    return make_vl()


@pytest.fixture(scope="session")
def hf_reference(vl_dir, images, hf_models, make_vl):
    """Lazily computed transformers greedy (tokens, logits) per case, each prompt run alone."""
    model = hf_models("default", "conditional")  # same weights as vl_dir (a copy of tiny_dir)
    session = make_vl()
    cache: dict[str, tuple[list[int], object]] = {}

    def get(case: str):
        if case not in cache:
            req = request(case, images)
            expanded = session.prepare([req]).prompts[0]
            processed = preprocess_images(list(req.images), session.processor)
            cache[case] = hf_greedy(model, expanded, NEW_TOKENS, EOS, pixel_values=processed.pixel_values,
                                    image_grid_thw=processed.grids, image_token_id=IMAGE)
        return cache[case]

    return get
