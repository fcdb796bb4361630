"""Host pieces of the VL path: placeholder expansion, scatter indices and the static-shape merge,
and the vision rotary's theta read from config.json."""

from __future__ import annotations

import pytest
import torch

from qwen35_neuron.config import parse_model_config
from qwen35_neuron.errors import InputError
from qwen35_neuron.testing.tiny import tiny_config_dict
from qwen35_neuron.vl import (
    assign_images_in_order,
    build_scatter_plan,
    encode_with_placeholders,
    expand_placeholders,
    merge_image_embeddings,
)
from vl_helpers import IMAGE


def test_expand_and_assign():
    assert expand_placeholders([1, IMAGE, 2, IMAGE], [3, 2], IMAGE) == [1, IMAGE, IMAGE, IMAGE, 2, IMAGE, IMAGE]
    assert assign_images_in_order([[IMAGE], [1], [IMAGE, IMAGE]], ["a", "b", "c"], IMAGE) == [["a"], [], ["b", "c"]]
    with pytest.raises(InputError, match="more placeholders than images"):
        assign_images_in_order([[IMAGE, IMAGE]], ["a"], IMAGE)
    with pytest.raises(InputError, match="fewer placeholders than images"):
        assign_images_in_order([[1]], ["a"], IMAGE)


def test_encode_with_placeholders_splits_on_the_literal():
    class Bytes:
        def encode(self, text, add_special_tokens=False):
            return list(text.encode())

    assert encode_with_placeholders(Bytes(), "a<|image_pad|><|image_pad|>b", IMAGE) == [97, IMAGE, IMAGE, 98]


def test_merge_puts_table_rows_at_image_tokens_and_passes_text_through():
    prompts = [[5, IMAGE, IMAGE, 6], [7, 8]]
    # image 0 owns table rows 4..5 (second pack), row 1 has no images
    plan = build_scatter_plan(prompts, 6, IMAGE, [[0], []], {0: 4}, [2])
    text = torch.randn(2, 6, 8)
    table = torch.randn(6, 8)
    merged = merge_image_embeddings(text, table, plan.source_index, plan.is_image)
    assert torch.equal(merged[0, 1], table[4]) and torch.equal(merged[0, 2], table[5])
    keep = ~plan.is_image
    assert torch.equal(merged[keep], text[keep])
    assert plan.is_image.sum() == 2


def test_merge_exports_as_one_static_graph():
    """The merge traces with torch.export: no data-dependent control flow."""

    class Merge(torch.nn.Module):
        def forward(self, text, table, source, is_image):
            return merge_image_embeddings(text, table, source, is_image)

    args = (torch.randn(2, 6, 8), torch.randn(4, 8), torch.zeros(2, 6, dtype=torch.long),
            torch.zeros(2, 6, dtype=torch.bool))
    program = torch.export.export(Merge(), args)
    source = torch.tensor([[0, 1, 2, 3, 0, 0], [0] * 6])
    is_image = torch.tensor([[False, True, True, True, False, False], [False] * 6])
    out = program.module()(args[0], args[1], source, is_image)
    assert torch.equal(out[0, 1:4], args[1][1:4]) and torch.equal(out[1], args[0][1])


def test_vision_rope_theta_comes_from_config_and_matches_hf():
    from transformers.models.qwen3_5_moe.configuration_qwen3_5_moe import Qwen3_5MoeVisionConfig
    from transformers.models.qwen3_5_moe.modeling_qwen3_5_moe import Qwen3_5MoeVisionModel

    from qwen35_neuron.vision import VisionTower, encode_images

    raw = tiny_config_dict(vision_config={"rope_parameters": {"rope_type": "default", "rope_theta": 50.0}})
    vision = parse_model_config(raw).vision
    assert vision.rope_theta == 50.0
    torch.manual_seed(0)
    hf = Qwen3_5MoeVisionModel(Qwen3_5MoeVisionConfig(**raw["vision_config"])).eval()
    with torch.no_grad():
        for name, param in hf.named_parameters():
            param.copy_((1.0 if name.endswith("norm1.weight") else 0.0) + 0.3 * torch.randn_like(param))
    ours = VisionTower(vision).eval()
    ours.load_state_dict(hf.state_dict())
    grids = [(1, 4, 6)]
    pixels = torch.randn(24, 3 * 2 * 4 * 4)
    with torch.no_grad():
        ref = hf(pixels, torch.tensor(grids)).pooler_output
        got = encode_images(ours, pixels, grids, vision, buckets=[32])
        default_theta = VisionTower(parse_model_config(tiny_config_dict()).vision).eval()
        default_theta.load_state_dict(hf.state_dict())
        other = encode_images(default_theta, pixels, grids, parse_model_config(tiny_config_dict()).vision, [32])
    assert (got - ref).abs().max() < 1e-5
    assert (other - ref).abs().max() > 1e-3  # theta matters: the test can fail
