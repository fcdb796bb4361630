"""Bucket packing, the block-diagonal mask and the host-side geometry of the vision tower."""

from __future__ import annotations

import pytest
import torch

from qwen35_neuron.errors import InputError, UnsupportedConfigError
from qwen35_neuron.vision import block_diagonal_bias, check_buckets, choose_bucket, pack_request, plan_packs
from qwen35_neuron.vision.attention_mask import MASKED_VALUE, PAD_SEGMENT, segment_ids
from qwen35_neuron.vision.grid import patch_coordinates, position_embedding_taps
from qwen35_neuron.vision.tower import patch_dim


def test_segments_and_mask_keep_images_and_padding_apart():
    segments = segment_ids([(1, 2, 2), (2, 2, 2)], bucket=16)  # an image, a 2-frame video, 4 pads
    assert segments.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [PAD_SEGMENT] * 4
    bias = block_diagonal_bias(segments)
    assert bias.shape == (16, 16)
    assert (bias[:4, :4] == 0).all() and (bias[:4, 4:] == MASKED_VALUE).all()
    assert (bias[4:8, 8:12] == MASKED_VALUE).all()  # frames of a video are separate, as in HF
    assert (bias[12:, 12:] == 0).all() and (bias[12:, :12] == MASKED_VALUE).all()  # pads see only pads
    assert (bias[:12, 12:] == MASKED_VALUE).all()  # nothing real sees a pad


def test_patch_coordinates_follow_merge_block_order():
    rows, cols = patch_coordinates((1, 4, 4), merge=2)
    assert list(zip(rows.tolist(), cols.tolist()))[:8] == [
        (0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (0, 3), (1, 2), (1, 3)]


def test_position_taps_hit_the_corners_and_sum_to_one():
    rows, cols = patch_coordinates((1, 4, 6), merge=2)
    index, weight = position_embedding_taps(rows, cols, (1, 4, 6), num_position_embeddings=36)
    assert torch.allclose(weight.sum(1), torch.ones(24))
    corner = (rows == 3) & (cols == 5)
    assert index[corner][0, weight[corner][0].argmax()] == 35 and weight[corner].max() == 1.0


def test_plan_packs_and_bucket_choice(tiny_vision_config):
    grids = [(1, 8, 6), (1, 4, 4), (1, 6, 8), (1, 2, 2)]  # 48, 16, 48, 4 patches
    assert plan_packs(grids, (64, 96), tiny_vision_config) == [[0, 1], [2, 3]]
    assert choose_bucket(52, (64, 96)) == 64 and choose_bucket(65, (96, 64)) == 96


def test_image_larger_than_the_largest_bucket_is_an_input_error(tiny_vision_config):
    grids = [(1, 4, 4), (1, 10, 10)]
    pixels = torch.zeros(116, patch_dim(tiny_vision_config))
    with pytest.raises(InputError) as err:
        pack_request(pixels, grids, [64], tiny_vision_config)
    message = str(err.value)
    assert "image 1 has 100 patches" in message and "largest vision bucket holds 64" in message
    assert "max_pixels <= 1024" in message and "at least 100 patches" in message
    with pytest.raises(InputError, match="exceed the largest vision bucket"):
        choose_bucket(100, [64])


def test_bad_buckets_are_config_errors(tiny_vision_config):
    with pytest.raises(UnsupportedConfigError, match="multiples of spatial_merge_size"):
        check_buckets([64, 30], tiny_vision_config)
    with pytest.raises(UnsupportedConfigError, match="no vision patch buckets"):
        check_buckets([], tiny_vision_config)


def test_pixel_grid_mismatches_are_input_errors(tiny_vision_config):
    dim = patch_dim(tiny_vision_config)
    with pytest.raises(InputError, match="need 16 patch rows"):
        pack_request(torch.zeros(15, dim), [(1, 4, 4)], [64], tiny_vision_config)
    with pytest.raises(InputError, match="multiples of\\s+spatial_merge_size"):
        pack_request(torch.zeros(15, dim), [(1, 3, 5)], [64], tiny_vision_config)
    with pytest.raises(InputError, match=r"shape \(16, 95\) but grid \(1, 4, 4\) needs \(16, 96\)"):
        pack_request(torch.zeros(16, dim - 1), [(1, 4, 4)], [64], tiny_vision_config)
