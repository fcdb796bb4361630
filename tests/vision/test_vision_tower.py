"""The static-bucket vision tower equals transformers' Qwen3_5MoeVisionModel."""

from __future__ import annotations

import pytest
import torch

from qwen35_neuron.config import VisionConfig
from qwen35_neuron.errors import UnsupportedConfigError
from qwen35_neuron.vision import VisionTower, encode_images, pack_images, pack_request, vision_state_dict_from_hf
from qwen35_neuron.vision.packing import split_pixel_values
from qwen35_neuron.vision.tower import patch_dim

# Grids larger and smaller than the 6x6 learned position table, non-square, different sizes.
GRIDS = [(1, 4, 8), (1, 10, 6)]


def _pixels(config: VisionConfig, grids, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(sum(t * h * w for t, h, w in grids), patch_dim(config), generator=gen)


@pytest.fixture(scope="module")
def tower(tiny_vision_config, hf_vision_tower) -> VisionTower:
    model = VisionTower(tiny_vision_config).eval()
    model.load_state_dict(hf_vision_tower.state_dict())  # Conv3d weight flattened by the load hook
    return model


def test_tower_equals_hf_on_two_images(tower, hf_vision_tower, tiny_vision_config):
    pixels = _pixels(tiny_vision_config, GRIDS)
    with torch.no_grad():
        ref = hf_vision_tower(pixels, torch.tensor(GRIDS)).pooler_output
        ours = encode_images(tower, pixels, GRIDS, tiny_vision_config, buckets=[128])
    assert ours.shape == ref.shape == (8 + 15, 64)
    assert ref.abs().max() > 1.0  # the comparison is not between near-zero tensors
    assert (ours - ref).abs().max().item() < 1e-5
    # the two images' tokens differ from each other (no accidental broadcasting)
    assert (ours[:8].mean(0) - ours[8:].mean(0)).abs().max() > 0.1


def test_each_image_alone_equals_hf(tower, hf_vision_tower, tiny_vision_config):
    """Packing two images together gives each the result it gets alone: attention never crosses."""
    pixels = _pixels(tiny_vision_config, GRIDS, seed=3)
    with torch.no_grad():
        together = encode_images(tower, pixels, GRIDS, tiny_vision_config, buckets=[128])
        first, second = split_pixel_values(pixels, GRIDS)
        alone = torch.cat([
            hf_vision_tower(first, torch.tensor([GRIDS[0]])).pooler_output,
            hf_vision_tower(second, torch.tensor([GRIDS[1]])).pooler_output,
        ])
    assert (together - alone).abs().max().item() < 1e-5


def test_padding_never_changes_real_outputs(tower, tiny_vision_config):
    grids = [(1, 4, 6), (1, 6, 4)]  # 48 patches: fits bucket 64 and bucket 128
    pixels = list(split_pixel_values(_pixels(tiny_vision_config, grids, seed=5), grids))
    small = pack_images(pixels, grids, 64, tiny_vision_config)
    large = pack_images(pixels, grids, 128, tiny_vision_config)
    # fill the padding of the large bucket with garbage: real outputs must not move at all
    garbage = large.patches.clone()
    garbage[48:] = 10 * torch.randn(80, garbage.shape[1], generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        out_small = tower(*small.tower_inputs())
        out_large = tower(garbage, *large.tower_inputs()[1:])
    assert out_small.shape == (16, 64) and out_large.shape == (32, 64)
    assert torch.isfinite(out_large).all()
    for (s0, s1), (l0, l1) in zip(small.token_slices, large.token_slices):
        assert torch.allclose(out_small[s0:s1], out_large[l0:l1], atol=1e-6, rtol=0)


def test_several_buckets_and_packs(tower, hf_vision_tower, tiny_vision_config):
    """Three images over buckets (64, 96): split into packs, reassembled in image order."""
    grids = [(1, 8, 6), (1, 4, 4), (1, 6, 8)]  # 48 + 16 + 48 patches
    pixels = _pixels(tiny_vision_config, grids, seed=7)
    packs = pack_request(pixels, grids, [96, 64], tiny_vision_config)
    assert [(p.bucket, p.image_ids) for p in packs] == [(64, (0, 1)), (64, (2,))]
    seen = []
    with torch.no_grad():
        ours = encode_images(lambda b: seen.append(b) or tower, pixels, grids, tiny_vision_config,
                             buckets=[96, 64], per_bucket=True)
        ref = hf_vision_tower(pixels, torch.tensor(grids)).pooler_output
    assert seen == [64, 64]
    assert (ours - ref).abs().max().item() < 1e-5


def test_state_dict_names_match_hf(tower, hf_vision_tower):
    hf_keys = set(hf_vision_tower.state_dict())
    assert set(tower.state_dict()) == hf_keys
    full = {f"model.visual.{k}": v for k, v in hf_vision_tower.state_dict().items()}
    full["model.language_model.embed_tokens.weight"] = torch.zeros(2, 2)
    converted = vision_state_dict_from_hf(full)
    assert set(converted) == hf_keys
    assert converted["patch_embed.proj.weight"].shape == (32, 96)
    fresh = VisionTower(tower.config)
    fresh.load_state_dict(converted, strict=True)
    assert torch.equal(fresh.patch_embed.proj.weight, tower.patch_embed.proj.weight)


def test_tower_exports_to_a_static_graph(tower, tiny_vision_config):
    """One graph per bucket: torch.export succeeds with no data-dependent control flow."""
    pixels = list(split_pixel_values(_pixels(tiny_vision_config, GRIDS[:1]), GRIDS[:1]))
    packed = pack_images(pixels, GRIDS[:1], 64, tiny_vision_config)
    exported = torch.export.export(tower, packed.tower_inputs())
    with torch.no_grad():
        assert torch.allclose(exported.module()(*packed.tower_inputs()), tower(*packed.tower_inputs()), atol=1e-6)


def test_bf16_tower_runs_close_to_fp32(tower, tiny_vision_config):
    pixels = _pixels(tiny_vision_config, GRIDS)
    bf16 = VisionTower(tiny_vision_config).eval()
    bf16.load_state_dict(tower.state_dict())
    bf16 = bf16.to(torch.bfloat16)
    with torch.no_grad():
        ref = encode_images(tower, pixels, GRIDS, tiny_vision_config, buckets=[128])
        low = encode_images(bf16, pixels, GRIDS, tiny_vision_config, buckets=[128], dtype=torch.bfloat16)
    assert low.dtype == torch.bfloat16
    rel = (low.float() - ref).norm() / ref.norm()
    assert rel < 0.05


def test_unsupported_activation_is_rejected(tiny_vision_config):
    from dataclasses import replace

    with pytest.raises(UnsupportedConfigError, match="hidden_act"):
        VisionTower(replace(tiny_vision_config, hidden_act="relu"))
