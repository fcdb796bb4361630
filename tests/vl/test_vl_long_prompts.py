"""Chunked prefill with images: the mRoPE ids and the image-embedding scatter are cut at the same
chunk boundaries as the tokens, so a boundary inside an image's tokens changes nothing, and a prompt
with images ~5x the largest context bucket equals transformers."""

from __future__ import annotations

import pytest
import torch

from qwen35_neuron.decoding.buckets import plan_chunks
from qwen35_neuron.testing.reference import hf_greedy
from qwen35_neuron.vision.preprocess import preprocess_images
from qwen35_neuron.vl import VLRequest, generate_vl
from vl_helpers import END, EOS, IMAGE, LOGIT_TOL, NEW_TOKENS, START, max_logit_diff, request


def boundaries_inside_images(prompt: list[int], buckets: tuple[int, ...]) -> list[int]:
    """Chunk starts whose token and the one before it are both image tokens."""
    return [c.start for c in plan_chunks(len(prompt), buckets)[1:]
            if prompt[c.start] == IMAGE and prompt[c.start - 1] == IMAGE]


@pytest.mark.parametrize("case, buckets", [
    ("one_image", (4,)),  # 11 tokens, image at 2..7: chunks [0, 4) [4, 8) [8, 11)
    ("one_image", (3, 5)),
    ("two_images", (4,)),  # 17 tokens, images at 2..7 and 11..14
])
def test_chunk_boundary_inside_an_image_changes_nothing(make_vl, vl, images, hf_reference, case, buckets):
    chunked_session = make_vl(context_buckets=buckets)
    prompt = chunked_session.prepare([request(case, images)]).prompts[0]
    assert boundaries_inside_images(prompt, buckets)
    one_call = generate_vl(vl, [request(case, images)], NEW_TOKENS)
    chunked = generate_vl(chunked_session, [request(case, images)], NEW_TOKENS)
    assert chunked.tokens == one_call.tokens
    assert max_logit_diff(chunked.logits[0], torch.stack(one_call.logits[0])) < 1e-4
    hf_tokens, hf_logits = hf_reference(case)
    assert chunked.tokens[0] == hf_tokens
    assert max_logit_diff(chunked.logits[0], hf_logits) < LOGIT_TOL


def test_long_prompt_with_images_in_a_mixed_batch_matches_transformers(make_vl, images, hf_models):
    text = [11, 42, 7, 99, 3, 17, 64, 128, 31, 9]
    long = VLRequest(text + [START, IMAGE, END] + text + [START, IMAGE, END] + text[:5], ["wide", "tall"])
    long = VLRequest(long.input_ids, [images[n] for n in long.images])
    short = request("no_image", images)
    session = make_vl(context_buckets=(4, 8))
    prompts = session.prepare([long, short]).prompts
    assert len(prompts[0]) >= 5 * 8 and boundaries_inside_images(prompts[0], (4, 8))
    ours = generate_vl(session, [long, short], NEW_TOKENS)
    model = hf_models("default", "conditional")
    for row, req in enumerate([long, short]):
        processed = preprocess_images(list(req.images), session.processor)
        tokens, logits = hf_greedy(model, prompts[row], NEW_TOKENS, EOS, pixel_values=processed.pixel_values,
                                   image_grid_thw=processed.grids, image_token_id=IMAGE)
        assert len(tokens) >= 4
        assert ours.tokens[row] == tokens
        assert max_logit_diff(ours.logits[row], logits) < LOGIT_TOL
