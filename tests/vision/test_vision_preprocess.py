"""Our PIL + numpy preprocessing equals transformers' Qwen2-VL image processor (used by Qwen3.5)."""

from __future__ import annotations

import json

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from qwen35_neuron.config import VisionConfig  # noqa: E402
from qwen35_neuron.errors import InputError, UnsupportedConfigError  # noqa: E402
from qwen35_neuron.vision import (  # noqa: E402
    ImageProcessorConfig,
    image_grid,
    load_image,
    load_image_processor_config,
    preprocess_images,
    smart_resize,
)

QWEN35_PROCESSOR = {
    "size": {"longest_edge": 16777216, "shortest_edge": 65536}, "patch_size": 16, "temporal_patch_size": 2,
    "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor", "image_processor_type": "Qwen2VLImageProcessorFast",
}


def _images():
    """Odd sizes that exercise round-up, round-down, min-pixel growth; RGBA, grayscale and palette modes."""
    rng = np.random.default_rng(0)
    rgb = lambda h, w: Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))  # noqa: E731
    rgba = Image.fromarray(rng.integers(0, 256, (50, 70, 4), dtype=np.uint8), "RGBA")
    gray = Image.fromarray(rng.integers(0, 256, (90, 120), dtype=np.uint8), "L")
    return [rgb(300, 200), rgb(64, 500), rgb(1001, 333), rgba, gray, rgb(32, 32).convert("P")]


def _hf_processor():
    """transformers' PIL backend of the Qwen2-VL processor. Its default (fast) backend resizes with torchvision,
    whose CPU build is not on PyPI, so no environment here could run it; its grids come from the same
    smart_resize and the PIL backend is the one our preprocessing reproduces exactly."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    kwargs = {k: v for k, v in QWEN35_PROCESSOR.items() if k not in ("processor_class", "image_processor_type")}
    return Qwen2VLImageProcessorPil(**kwargs)


def test_equals_transformers_pil_processor_bit_for_bit():
    images = _images()
    ref = _hf_processor()(images, return_tensors="np")
    ours = preprocess_images(images, ImageProcessorConfig())
    assert [tuple(g) for g in ref["image_grid_thw"].tolist()] == list(ours.grids)
    assert ours.pixel_values.shape == ref["pixel_values"].shape
    assert np.array_equal(ours.pixel_values, ref["pixel_values"])


def test_smart_resize_known_cases():
    # inside the limits: each side rounds to the nearest multiple (500/32=15.6 -> 16, 300/32=9.4 -> 9)
    assert smart_resize(500, 300, 32, 65536, 16777216) == (512, 288)
    # 300x200 rounds to 288x192 = 55296 < 65536: grown by sqrt(65536/60000) and rounded up
    assert smart_resize(300, 200, 32, 65536, 16777216) == (320, 224)
    assert smart_resize(32, 32, 32, 65536, 16777216) == (256, 256)
    # 1000/28 rounds to 36 -> 1008^2 > 28*28*1280: shrunk by sqrt(1e6/1003520) and rounded down -> 35*28
    assert smart_resize(1000, 1000, 28, 56 * 56, 28 * 28 * 1280) == (980, 980)
    assert smart_resize(8000, 6000, 32, 65536, 1024 * 1024) == (1152, 864)


def test_shapes_grid_layout_and_value_range():
    config = ImageProcessorConfig()
    # a 2-colour image: left half black, right half white; 512x256 -> grid (1, 16, 32) with patch 16
    pixels = np.zeros((256, 512, 3), dtype=np.uint8)
    pixels[:, 256:] = 255
    out = preprocess_images([pixels], config)
    assert out.grids == ((1, 16, 32),)
    assert out.pixel_values.shape == (16 * 32, 3 * 2 * 16 * 16) and out.pixel_values.dtype == np.float32
    assert out.pixel_values.min() == -1.0 and out.pixel_values.max() == 1.0  # (x/255 - 0.5) / 0.5
    assert out.num_tokens(2) == [128]
    # merge-block order: patch k covers block (k // 4) and in-block (row, col) = ((k % 4) // 2, k % 2);
    # block columns 0..7 are black, 8..15 white
    blocks = out.pixel_values.reshape(8, 16, 4, -1)
    assert np.all(blocks[:, :8] == -1.0) and np.all(blocks[:, 8:] == 1.0)
    # the frame is repeated over the temporal patch: [C, T, P, P] with both T slices equal
    one = out.pixel_values[0].reshape(3, 2, 16, 16)
    assert np.array_equal(one[:, 0], one[:, 1])
    assert image_grid(256, 512, config) == (1, 16, 32)


def test_patch_layout_is_channel_temporal_row_col():
    config = ImageProcessorConfig(patch_size=2, merge_size=2, min_pixels=16, max_pixels=16,
                                  do_normalize=False, do_rescale=False)
    pixels = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    out = preprocess_images([pixels], config)
    assert out.grids == ((1, 2, 2),)
    first = out.pixel_values[1].reshape(3, 2, 2, 2)  # patch (row 0, col 1)
    assert first[0, 0].tolist() == [[pixels[0, 2, 0], pixels[0, 3, 0]], [pixels[1, 2, 0], pixels[1, 3, 0]]]
    assert first[2, 1].tolist() == [[pixels[0, 2, 2], pixels[0, 3, 2]], [pixels[1, 2, 2], pixels[1, 3, 2]]]


def test_reads_the_model_directory_config(tmp_path):
    vision = VisionConfig(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, in_channels=3, patch_size=16,
                          temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=64,
                          num_position_embeddings=36)
    assert load_image_processor_config(tmp_path, vision) == ImageProcessorConfig()  # defaults when absent
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**QWEN35_PROCESSOR, "size": {
        "longest_edge": 1 << 20, "shortest_edge": 4096}, "image_mean": [0.1, 0.2, 0.3]}))
    config = load_image_processor_config(tmp_path, vision)
    assert (config.min_pixels, config.max_pixels, config.image_mean) == (4096, 1 << 20, (0.1, 0.2, 0.3))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**QWEN35_PROCESSOR, "patch_size": 14}))
    with pytest.raises(UnsupportedConfigError, match="patch_size=14"):
        load_image_processor_config(tmp_path, vision)


def test_pixel_limits_override():
    config = ImageProcessorConfig().with_pixel_limits(max_pixels=128 * 128)
    out = preprocess_images([np.zeros((1000, 1000, 3), dtype=np.uint8)], config)
    t, h, w = out.grids[0]
    assert h * w * 16 * 16 <= 128 * 128


def test_unreadable_and_missing_files_are_input_errors(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="cannot read image"):
        load_image(bad)
    with pytest.raises(InputError, match="cannot read image"):
        preprocess_images([tmp_path / "absent.jpg"])
    good = tmp_path / "ok.png"
    Image.fromarray(np.full((40, 60, 3), 7, dtype=np.uint8)).save(good)
    assert load_image(good).size == (60, 40)


def test_bad_arrays_and_shapes_are_input_errors():
    with pytest.raises(InputError, match="dtype float32"):
        load_image(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(InputError, match="aspect ratio"):
        preprocess_images([np.zeros((2, 500, 3), dtype=np.uint8)])
    with pytest.raises(InputError, match="unsupported image input"):
        load_image(12345)
