"""The compiled vision tower's plumbing on a CPU: per-bucket trace -> .pt -> manifest -> load -> VL runner.

torch.jit.trace stands in for torch_neuronx.trace (same ScriptModule save/load round trip); the
Neuron-only part (neuronx-cc numerics) is in test_vision_trn2.py.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from qwen35_neuron.config import VisionConfig, load_model_config
from qwen35_neuron.vision.compiled import (
    MANIFEST_NAME,
    CompiledVisionError,
    buckets_for_images,
    buckets_for_pixel_limit,
    compile_towers,
    example_grid,
    example_pack,
    load_towers,
    mixed_pack,
    read_manifest,
    real_rows,
    vision_config_hash,
    weights_digest,
)
from qwen35_neuron.runtime.vl_session import load_vl_session
from qwen35_neuron.vision.preprocess import ImageProcessorConfig
from qwen35_neuron.vl import generate_vl
from qwen35_neuron.vl.vision_runner import load_vision_tower
from nv_helpers import BUCKETS, NEW_TOKENS, TINY_VISION, jit_tracer, relative_error, request, run_config, seeded_tower

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch 2.13 deprecates torch.jit
TINY_PROCESSOR = ImageProcessorConfig(patch_size=4, temporal_patch_size=2, merge_size=2, min_pixels=64, max_pixels=4096)


def _copy(src: str, tmp_path: Path) -> Path:
    dst = tmp_path / "vision"
    shutil.copytree(src, dst)
    return dst


# ---- example inputs and bucket choice ----------------------------------------------------------


def test_example_pack_fills_the_bucket_with_the_traced_dtypes():
    config = VisionConfig(**TINY_VISION)
    assert [example_grid(b, 2) for b in (32, 64, 16384)] == [(1, 4, 8), (1, 8, 8), (1, 128, 128)]
    inputs = example_pack(config, 32, torch.bfloat16).tower_inputs()
    assert [tuple(t.shape) for t in inputs] == [(32, 96), (32, 4), (32, 4), (32, 16), (32, 16), (32, 32)]
    assert [t.dtype for t in inputs] == [torch.bfloat16, torch.int64, torch.float32, torch.bfloat16, torch.bfloat16,
                                         torch.bfloat16]
    assert int(inputs[1].max()) < config.num_position_embeddings
    assert torch.equal(inputs[5], torch.zeros(32, 32, dtype=torch.bfloat16))  # one image: nothing masked
    mixed = mixed_pack(config, 64).attention_bias  # 32 + 16 patches + 16 padding: three segments
    assert mixed[0, 31].item() == 0 and mixed[0, 32].item() == -65504.0 and mixed[63, 48].item() == 0
    with pytest.raises(Exception, match="multiples of spatial_merge_size"):
        example_pack(config, 30)


def test_buckets_from_image_sizes_and_pixel_limits():
    # patch 4, merge 2: 16x24 px -> 4x6 = 24 patches, 24x16 -> 24, 16x16 -> 16, 48x48 -> 144
    sizes = [(16, 24), (24, 16), (16, 16), (48, 48)]
    assert buckets_for_images(sizes, TINY_PROCESSOR) == (16, 24, 144)
    assert buckets_for_images(sizes, TINY_PROCESSOR, align=32) == (32, 160)
    assert buckets_for_images([(1000, 1000)], TINY_PROCESSOR) == (256,)  # shrunk to max_pixels 4096 = 256 patches
    assert buckets_for_pixel_limit(TINY_PROCESSOR) == (16, 64, 256)
    assert buckets_for_pixel_limit(ImageProcessorConfig()) == (4096, 16384, 65536)  # 4096^2 px at patch 16
    assert buckets_for_pixel_limit(ImageProcessorConfig(), max_pixels=1024 * 1024, count=2, align=128) == (1024, 4096)
    with pytest.raises(CompiledVisionError, match="multiple of merge_size"):
        buckets_for_images(sizes, TINY_PROCESSOR, align=6)


def test_config_hash_tracks_every_field_and_the_dtype():
    config = VisionConfig(**TINY_VISION)
    same = vision_config_hash(VisionConfig(**TINY_VISION), "bfloat16")
    assert vision_config_hash(config, torch.bfloat16) == same and len(same) == 16
    assert vision_config_hash(config, "float32") != same
    assert vision_config_hash(VisionConfig(**{**TINY_VISION, "depth": 3}), "bfloat16") != same
    assert vision_config_hash(VisionConfig(**{**TINY_VISION, "layer_norm_eps": 1e-5}), "bfloat16") != same


# ---- round trip ---------------------------------------------------------------------------------


def test_jit_round_trip_equals_the_eager_tower(nv_model_dir, jit_compiled_dir):
    config = load_model_config(nv_model_dir)
    manifest = read_manifest(jit_compiled_dir)
    assert manifest.buckets == BUCKETS and manifest.dtype == "float32" and manifest.backend == "cpu-jit"
    assert manifest.config_hash == vision_config_hash(config.vision, "float32")
    assert manifest.inputs[64][0] == {"name": "patches", "shape": [64, 96], "dtype": "float32"}
    assert manifest.outputs[32]["shape"] == [8, 64]
    eager = load_vision_tower(nv_model_dir, config)
    assert manifest.weights_digest == weights_digest(eager.state_dict())
    towers = load_towers(jit_compiled_dir, torch.jit.load, expected=config.vision, run_buckets=BUCKETS)
    for bucket in BUCKETS:
        pack = mixed_pack(config.vision, bucket)
        ours, reference = towers.run(pack), eager(*pack.tower_inputs())
        assert isinstance(towers(bucket).module, torch.jit.ScriptModule)
        assert ours.shape == (bucket // 4, 64)
        torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-6)
        assert reference.abs().max() > 0.5  # a real signal, not all zeros


def test_bf16_tower_serves_fp32_packs(tmp_path):
    """An fp32 engine packs in fp32; the runner casts to the traced bf16 inputs: same as packing in bf16."""
    config = VisionConfig(**TINY_VISION)
    compile_towers(seeded_tower(config), config, BUCKETS, tmp_path, jit_tracer, dtype="bfloat16", versions={})
    towers = load_towers(tmp_path, torch.jit.load, expected=config)
    reference_fp32 = seeded_tower(config)
    reference_bf16 = seeded_tower(config).to(torch.bfloat16)
    for bucket in BUCKETS:
        pack32, pack16 = mixed_pack(config, bucket, torch.float32), mixed_pack(config, bucket, torch.bfloat16)
        ours = towers.run(pack32)
        assert ours.dtype == torch.bfloat16
        torch.testing.assert_close(ours, reference_bf16(*pack16.tower_inputs()), rtol=0, atol=0)
        error = relative_error(real_rows(pack32, ours), real_rows(pack32, reference_fp32(*pack32.tower_inputs())))
        print(f"bucket {bucket}: bf16 vs fp32 eager, max relative error {error:.2e}")
        assert 1e-4 < error < 2e-2  # bf16 rounding is visible but small


@pytest.mark.parametrize("cases, buckets", [
    (["one_image"], [32]),  # 24 patches
    (["one_image", "two_images", "one_image"], [64, 32]),  # 24 + 24 + 16 | 24 patches: two packs, two buckets
])
def test_vl_tokens_with_the_compiled_runner_equal_the_cpu_tower(nv_model_dir, nv_images, jit_compiled_dir, cases,
                                                                buckets):
    run = run_config(batch_size=len(cases))
    config = load_model_config(nv_model_dir)
    towers = load_towers(jit_compiled_dir, torch.jit.load, expected=config.vision, run_buckets=run.vision_buckets)
    calls: list[int] = []

    def runner(pack):
        calls.append(pack.bucket)
        return towers.run(pack)

    _, compiled = load_vl_session(nv_model_dir, run, runner=runner)
    _, eager = load_vl_session(nv_model_dir, run)
    requests = [request(c, nv_images) for c in cases]
    ours = generate_vl(compiled, requests, NEW_TOKENS, eos_token_ids=())
    reference = generate_vl(eager, requests, NEW_TOKENS, eos_token_ids=())
    assert calls == buckets
    for row in range(len(cases)):
        assert len(ours.tokens[row]) == NEW_TOKENS
        assert ours.tokens[row] == reference.tokens[row]
        diff = (torch.stack(ours.logits[row]) - torch.stack(reference.logits[row])).abs().max().item()
        assert diff < 1e-4, diff


# ---- errors -------------------------------------------------------------------------------------


def test_missing_bucket_file_names_it_and_the_fix(jit_compiled_dir, tmp_path):
    out = _copy(jit_compiled_dir, tmp_path)
    (out / "vision_tower_64.pt").unlink()
    fix = r"recompile with compile_scripts/compile_vision\.py --buckets 32 64"
    with pytest.raises(CompiledVisionError, match=r"lacks vision_tower_64\.pt .*: " + fix):
        load_towers(out, torch.jit.load)


def test_config_hash_mismatch_names_the_fields(jit_compiled_dir, nv_model_dir):
    vision = load_model_config(nv_model_dir).vision
    other = VisionConfig(**{**vision.__dict__, "depth": vision.depth + 1})
    with pytest.raises(CompiledVisionError, match=r"another vision config.*depth: compiled 2, model 3.*compile_vision"):
        load_towers(jit_compiled_dir, torch.jit.load, expected=other)
    with pytest.raises(CompiledVisionError, match="other weights"):
        load_towers(jit_compiled_dir, torch.jit.load, expected=vision, expected_weights="0123456789abcdef")


def test_buckets_that_were_not_compiled(jit_compiled_dir):
    with pytest.raises(CompiledVisionError, match=r"vision buckets \[128\] .* were not compiled.*--buckets 32 64 128"):
        load_towers(jit_compiled_dir, torch.jit.load, run_buckets=(32, 128))
    towers = load_towers(jit_compiled_dir, torch.jit.load)
    with pytest.raises(CompiledVisionError, match=r"no compiled vision tower for a bucket of 128 .*: \[32, 64\]"):
        towers(128)
    with pytest.raises(CompiledVisionError, match=r"shape \[16, 96\] .* compiled for \[32, 96\]"):
        towers(32)(*[t[:16] for t in example_pack(VisionConfig(**TINY_VISION), 32, torch.float32).tower_inputs()])


def test_no_manifest_bad_manifest_and_old_format(jit_compiled_dir, tmp_path):
    with pytest.raises(CompiledVisionError, match="holds no vision_manifest.json.*compile_vision.py"):
        load_towers(tmp_path, torch.jit.load)
    out = _copy(jit_compiled_dir, tmp_path)
    doc = json.loads((out / MANIFEST_NAME).read_text())
    (out / MANIFEST_NAME).write_text(json.dumps({**doc, "format": "something-else/0"}))
    with pytest.raises(CompiledVisionError, match="format 'something-else/0'"):
        load_towers(out, torch.jit.load)
    (out / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(CompiledVisionError, match="unreadable"):
        load_towers(out, torch.jit.load)


def test_a_failed_compile_leaves_no_loadable_directory(jit_compiled_dir, tmp_path):
    out = _copy(jit_compiled_dir, tmp_path)  # a good old compile is there
    config = VisionConfig(**TINY_VISION)
    seen: list[int] = []

    def failing(tower, example):
        seen.append(example[0].shape[0])
        if len(seen) == 2:
            raise RuntimeError("compiler crashed")
        return jit_tracer(tower, example)

    with pytest.raises(RuntimeError, match="compiler crashed"):
        compile_towers(seeded_tower(config), config, BUCKETS, out, failing, dtype="float32")
    assert seen == [32, 64] and not (out / MANIFEST_NAME).exists()
    with pytest.raises(CompiledVisionError, match="holds no vision_manifest.json"):
        load_towers(out, torch.jit.load)


def test_sdk_version_change_warns(jit_compiled_dir, tmp_path):
    out = _copy(jit_compiled_dir, tmp_path)
    doc = json.loads((out / MANIFEST_NAME).read_text())
    doc["sdk_versions"] = {"torch-neuronx": "2.9.0.2.13.26312"}
    (out / MANIFEST_NAME).write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match=r"torch-neuronx 2\.9\.0\.2\.13\.26312 -> 2\.9\.0\.2\.15"):
        load_towers(out, torch.jit.load, current_versions={"torch-neuronx": "2.9.0.2.15.32035"})


# ---- the compile script (dry run: no SDK needed) ------------------------------------------------


def _script():
    path = Path(__file__).resolve().parents[2] / "compile_scripts" / "compile_vision.py"
    spec = importlib.util.spec_from_file_location("compile_vision_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compile_script_dry_run_plans_buckets(nv_model_dir, tmp_path, capsys):
    script = _script()
    out = tmp_path / "out"
    assert script.main([nv_model_dir, str(out), "--image-size", "16x24", "--image-size", "48X48", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "vision buckets (patches): 24 144; dtype bfloat16" in text and "vision_tower_144.pt" in text
    assert script.main([nv_model_dir, str(out), "--max-pixels", "4096", "--count", "2", "--dry-run"]) == 0
    assert "vision buckets (patches): 64 256" in capsys.readouterr().out
    assert script.main([nv_model_dir, str(out), "--buckets", "30", "--dry-run"]) == 2
    assert "not positive multiples of spatial_merge_size**2 = 4" in capsys.readouterr().err
    assert not out.exists()
