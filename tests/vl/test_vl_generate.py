"""The VL orchestrator's tokens equal Qwen3_5MoeForConditionalGeneration.generate on a tiny
checkpoint: prompts with 0, 1 and 2 images, alone and batched; per-request state; bucket padding."""

from __future__ import annotations

import pytest
import torch

from qwen35_neuron.config import load_model_config
from qwen35_neuron.runtime.vl_session import load_vl_session
from qwen35_neuron.vl import VLRequest, generate_vl, per_bucket_runner
from qwen35_neuron.vl.vision_runner import load_vision_tower
from vl_helpers import CASES, END, IMAGE, LOGIT_TOL, NEW_TOKENS, START, max_logit_diff, request, run_config


@pytest.mark.parametrize("case", list(CASES))
def test_alone_matches_transformers(case, vl, images, hf_reference):
    ours = generate_vl(vl, [request(case, images)], NEW_TOKENS)
    hf_tokens, hf_logits = hf_reference(case)
    diff = max_logit_diff(ours.logits[0], hf_logits)
    print(f"{case}: {len(hf_tokens)} tokens, match {ours.tokens[0] == hf_tokens}, max |logit diff| {diff:.2e}")
    assert len(hf_tokens) >= 8
    assert ours.tokens[0] == hf_tokens
    assert diff < LOGIT_TOL


def test_batch_mixing_rows_with_and_without_images(vl, images, hf_reference):
    cases = ["one_image", "no_image", "two_images"]
    ours = generate_vl(vl, [request(c, images) for c in cases], NEW_TOKENS)
    for row, case in enumerate(cases):
        hf_tokens, hf_logits = hf_reference(case)
        assert ours.tokens[row] == hf_tokens, case
        assert max_logit_diff(ours.logits[row], hf_logits) < LOGIT_TOL, case


def test_rope_deltas_per_row(make_vl, images):
    """wide (4x6 patches -> 2x3 merged): 6 tokens advance 3 ids; tall 6 -> 3, square 4 -> 2."""
    session = make_vl()
    session.prefill([request(c, images) for c in ("one_image", "no_image", "two_images")], max_new_tokens=4)
    assert [r.rope_delta for r in session.rows[:3]] == [3 - 6, 0, (3 - 6) + (2 - 4)]
    assert [r.length for r in session.rows[:3]] == [6 - 1 + 6, 5, 9 - 2 + 6 + 4]


def test_the_image_content_reaches_the_model(vl, images):
    """Same prompt and grid, different pixels: the logits must move (the image path is live)."""
    prompt = CASES["one_image"][0]
    a = generate_vl(vl, [VLRequest(prompt, [images["wide"]])], 1, eos_token_ids=()).logits[0][0]
    b = generate_vl(vl, [VLRequest(prompt, [images["wide2"]])], 1, eos_token_ids=()).logits[0][0]
    assert (a - b).abs().max() > 0.1


def test_text_request_after_image_request_starts_clean(make_vl, images):
    """Row 0 serves an image request, then a text one: the text one must not inherit the rope delta."""
    session = make_vl()
    session.prefill([request("one_image", images)], rows=[0], max_new_tokens=NEW_TOKENS)
    for _ in range(3):
        session.decode()
    assert session.rows[0].rope_delta == -3 and session.rows[0].length == 14
    first = session.prefill([request("no_image", images)], rows=[0], max_new_tokens=NEW_TOKENS)
    assert session.rows[0].rope_delta == 0 and session.rows[0].length == 5
    tokens = first + [session.decode()[0] for _ in range(NEW_TOKENS - 1)]
    alone = generate_vl(make_vl(), [request("no_image", images)], NEW_TOKENS, eos_token_ids=())
    assert tokens == alone.tokens[0]


@pytest.mark.parametrize("case, tight, loose, tight_calls", [
    ("one_image", (24,), (256,), [24]),  # 24 patches: no padding vs 232 padding patches
    ("two_images", (24,), (64,), [24, 24]),  # 24 + 16 patches: two packs vs one padded pack
])
def test_patch_bucket_padding_leaves_outputs_unchanged(vl_dir, images, case, tight, loose, tight_calls):
    config_tight, config_loose = run_config(vision_buckets=tight), run_config(vision_buckets=loose)
    tower = load_vision_tower(vl_dir, load_model_config(vl_dir))
    calls: list[int] = []

    def towers(bucket: int):
        calls.append(bucket)
        return tower

    _, tight_session = load_vl_session(vl_dir, config_tight, runner=per_bucket_runner(towers))
    a = generate_vl(tight_session, [request(case, images)], NEW_TOKENS, eos_token_ids=())
    assert calls == tight_calls
    _, loose_session = load_vl_session(vl_dir, config_loose)
    b = generate_vl(loose_session, [request(case, images)], NEW_TOKENS, eos_token_ids=())
    assert a.tokens == b.tokens
    assert max_logit_diff(a.logits[0], torch.stack(b.logits[0])) < 1e-5


def test_adjacent_placeholders_are_two_images(vl, images):
    """[START, IMAGE, IMAGE, END] with two images equals the prompt laid out with both expanded runs."""
    prompt = [7, START, IMAGE, IMAGE, END, 8]
    batch = vl.prepare([VLRequest(prompt, [images["wide"], images["square"]])])
    assert batch.prompts[0] == [7, START] + [IMAGE] * (6 + 4) + [END, 8]
    assert batch.grids == [(1, 4, 6), (1, 4, 4)]


def test_simulated_tp_with_images_equals_dense(make_vl, images, hf_reference):
    batch = [request(c, images) for c in ("two_images", "one_image")]
    sharded = generate_vl(make_vl(backend="simulated-tp", tp_degree=2), batch, NEW_TOKENS)
    assert sharded.tokens == [hf_reference("two_images")[0], hf_reference("one_image")[0]]
