"""Images through the dense Qwen3.5 family (qwen3_5, Qwen3_5ForConditionalGeneration): our VL path
equals transformers' generate, tied and untied, for prompts with 0, 1 and 2 images in one batch."""

from __future__ import annotations

import shutil

import pytest

from qwen35_neuron.config import load_model_config
from qwen35_neuron.runtime.vl_session import load_vl_session
from qwen35_neuron.testing.reference import hf_greedy
from qwen35_neuron.testing.tokenizer import write_tiny_tokenizer
from qwen35_neuron.vision.preprocess import preprocess_images
from qwen35_neuron.vl import generate_vl, processor_for_vision, write_preprocessor_config
from vl_helpers import EOS, IMAGE, LOGIT_TOL, NEW_TOKENS, PIXEL_LIMITS, max_logit_diff, request, run_config


@pytest.mark.parametrize("name", ["dense", "dense_tied"])
def test_dense_images_match_transformers(name, checkpoint_dirs, hf_models, images, tmp_path):
    path = tmp_path / name
    shutil.copytree(checkpoint_dirs[name], path)
    write_preprocessor_config(path, processor_for_vision(load_model_config(path).vision, *PIXEL_LIMITS))
    write_tiny_tokenizer(path)
    session = load_vl_session(str(path), run_config())[1]
    cases = ["one_image", "no_image", "two_images"]
    requests = [request(c, images) for c in cases]
    ours = generate_vl(session, requests, NEW_TOKENS)
    reference = hf_models(name, "conditional")
    for row, req in enumerate(requests):
        expanded = session.prepare([req]).prompts[0]
        processed = preprocess_images(list(req.images), session.processor)
        tokens, logits = hf_greedy(reference, expanded, NEW_TOKENS, EOS, pixel_values=processed.pixel_values,
                                   image_grid_thw=processed.grids, image_token_id=IMAGE)
        assert len(tokens) >= 4, cases[row]
        assert ours.tokens[row] == tokens, cases[row]
        assert max_logit_diff(ours.logits[row], logits) < LOGIT_TOL, cases[row]
