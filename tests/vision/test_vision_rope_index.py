"""mRoPE position ids and rope deltas equal transformers' Qwen3_5MoeModel.get_rope_index."""

from __future__ import annotations

import pytest
import torch

from qwen35_neuron.config import parse_model_config
from qwen35_neuron.errors import InputError
from qwen35_neuron.vision import decode_position_ids, mrope_position_ids, mrope_position_ids_for

IMG, VID, VS, VE = 60, 61, 58, 59  # image, video, vision start, vision end token ids of the tiny config
TOKEN_IDS = dict(image_token_id=IMG, video_token_id=VID, vision_start_token_id=VS, vision_end_token_id=VE)


@pytest.fixture(scope="module")
def hf_model():
    from transformers.models.qwen3_5_moe.configuration_qwen3_5_moe import Qwen3_5MoeConfig
    from transformers.models.qwen3_5_moe.modeling_qwen3_5_moe import Qwen3_5MoeModel

    config = Qwen3_5MoeConfig(
        text_config=dict(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=8, num_experts=2, num_experts_per_tok=1,
                         moe_intermediate_size=8, shared_expert_intermediate_size=8, linear_num_key_heads=1,
                         linear_num_value_heads=1, linear_key_head_dim=8, linear_value_head_dim=8,
                         layer_types=["full_attention"]),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=16,
                           num_position_embeddings=16),
        **TOKEN_IDS,
    )
    return Qwen3_5MoeModel(config).eval()


def _image(grid, merge=2):
    t, h, w = grid
    return [VS] + [IMG] * (t * h * w // merge**2) + [VE]


def _video_frame(h, w, merge=2):
    return [VS] + [VID] * (h * w // merge**2) + [VE]


def _reference(hf_model, ids, image_grids=None, mask=None, video_grids=None):
    types = torch.zeros_like(ids)
    types[ids == IMG] = 1
    types[ids == VID] = 2
    grid = lambda g: None if g is None else torch.tensor(g)  # noqa: E731
    return hf_model.get_rope_index(ids, mm_token_type_ids=types, image_grid_thw=grid(image_grids),
                                   video_grid_thw=grid(video_grids), attention_mask=mask)


def _ours(ids, image_grids=None, mask=None, video_grids=None):
    return mrope_position_ids(ids, image_grids, mask, video_grids=video_grids, image_token_id=IMG,
                              video_token_id=VID, spatial_merge_size=2)


CASES = {
    "text_only": ([[5, 6, 7, 8, 9]], None),
    "one_image": ([[5, 6] + _image((1, 4, 6)) + [7]], [(1, 4, 6)]),
    "two_images": ([[5] + _image((1, 4, 6)) + [6, 7] + _image((1, 8, 2)) + [8, 9]], [(1, 4, 6), (1, 8, 2)]),
    "image_in_middle": ([[1, 2, 3, 4] + _image((1, 6, 4)) + [5, 6, 7, 8, 9, 10]], [(1, 6, 4)]),
    "image_first": ([_image((1, 2, 2))[1:-1] + [5, 6]], [(1, 2, 2)]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_hf_get_rope_index(hf_model, case):
    rows, grids = CASES[case]
    ids = torch.tensor(rows)
    ref_pos, ref_delta = _reference(hf_model, ids, grids)
    pos, delta = _ours(ids, grids)
    assert pos.shape == (3, 1, ids.shape[1]) and pos.dtype == torch.long
    assert torch.equal(pos, ref_pos)
    assert torch.equal(delta, ref_delta.long())


def test_known_values_for_one_image():
    ids = torch.tensor([[5, 6] + _image((1, 4, 6)) + [7]])  # 2 text, VS, 6 image tokens (2x3), VE, text
    pos, delta = _ours(ids, [(1, 4, 6)])
    assert pos[0, 0].tolist() == [0, 1, 2] + [3] * 6 + [6, 7]
    assert pos[1, 0].tolist() == [0, 1, 2, 3, 3, 3, 4, 4, 4, 6, 7]
    assert pos[2, 0].tolist() == [0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7]
    assert delta.tolist() == [[8 - 11]]


def test_right_and_left_padded_batch_matches_hf(hf_model):
    a = [5] + _image((1, 4, 6)) + [6, 7]  # 11 tokens
    b = [8, 9] + _image((1, 2, 4)) + [4] + _image((1, 4, 2)) + [3]  # 12 tokens
    c = [1, 2, 3]
    width = 12
    rows = [a + [0] * (width - len(a)), b, [0] * (width - len(c)) + c]
    mask = torch.tensor([[1] * len(a) + [0] * (width - len(a)), [1] * width, [0] * (width - len(c)) + [1] * len(c)])
    ids = torch.tensor(rows)
    grids = [(1, 4, 6), (1, 2, 4), (1, 4, 2)]
    ref_pos, ref_delta = _reference(hf_model, ids, grids, mask)
    pos, delta = _ours(ids, grids, mask)
    assert torch.equal(pos, ref_pos)
    assert torch.equal(delta, ref_delta.long())
    assert delta[:, 0].tolist() == [-3, 0, 0]


def test_video_frames_match_hf(hf_model):
    ids = torch.tensor([[5, 6] + _video_frame(4, 4) + [7] + _video_frame(4, 4) + [8] + _image((1, 2, 6)) + [9]])
    ref_pos, ref_delta = _reference(hf_model, ids, [(1, 2, 6)], video_grids=[(2, 4, 4)])
    pos, delta = _ours(ids, [(1, 2, 6)], video_grids=[(2, 4, 4)])
    assert torch.equal(pos, ref_pos) and torch.equal(delta, ref_delta.long())


def test_decode_positions_continue_from_the_delta(hf_model):
    """HF's decode rule: position = (real tokens so far) + rope_delta, on all three axes."""
    ids = torch.tensor([[5] + _image((1, 4, 6)) + [6, 7]])
    pos, delta = _ours(ids, [(1, 4, 6)])
    nxt = decode_position_ids(torch.tensor([ids.shape[1]]), delta, num_new=3)
    assert nxt.shape == (3, 1, 3)
    assert nxt[:, 0, 0].tolist() == [int(pos.max()) + 1] * 3
    assert nxt[0, 0].tolist() == [int(pos.max()) + 1 + i for i in range(3)]


def test_config_wrapper_uses_model_token_ids():
    raw = {"model_type": "qwen3_5_moe", "image_token_id": IMG, "video_token_id": VID,
           "text_config": {"vocab_size": 64, "hidden_size": 16, "num_hidden_layers": 4, "num_attention_heads": 2,
                           "num_key_value_heads": 1, "head_dim": 8, "num_experts": 2, "num_experts_per_tok": 1,
                           "moe_intermediate_size": 8},
           "vision_config": {"hidden_size": 16, "num_heads": 2, "out_hidden_size": 16}}
    ids = torch.tensor([[5] + _image((1, 4, 6)) + [6]])
    pos, delta = mrope_position_ids_for(parse_model_config(raw), ids, [(1, 4, 6)])
    assert torch.equal(pos, _ours(ids, [(1, 4, 6)])[0])


def test_placeholder_count_mismatch_is_an_input_error():
    ids = torch.tensor([[5, VS] + [IMG] * 5 + [VE]])  # grid needs 6 tokens
    with pytest.raises(InputError, match="needs 6 tokens"):
        _ours(ids, [(1, 4, 6)])


def test_missing_and_extra_grids_are_input_errors():
    ids = torch.tensor([[5] + _image((1, 4, 6))])
    with pytest.raises(InputError, match="one grid per image"):
        _ours(ids, [])
    with pytest.raises(InputError, match="more image grids"):
        _ours(ids, [(1, 4, 6), (1, 2, 2)])
