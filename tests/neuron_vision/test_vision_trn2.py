"""trn2 only: the vision tower compiled per patch bucket with torch_neuronx matches the CPU tower, and
VL generation with the compiled tower gives the CPU reference's tokens. Skipped without the Neuron SDK.

Each compile runs neuronx-cc (about a minute per bucket), so these tests take minutes, not seconds.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.neuron, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
torch_neuronx = pytest.importorskip("torch_neuronx")

from qwen35_neuron.config import VisionConfig  # noqa: E402
from qwen35_neuron.neuron import vision_encoder  # noqa: E402
from qwen35_neuron.runtime.vl_session import load_vl_session  # noqa: E402
from qwen35_neuron.vision.compiled import mixed_pack, read_manifest, real_rows  # noqa: E402
from qwen35_neuron.vl import generate_vl  # noqa: E402
from nv_helpers import BUCKETS, NEW_TOKENS, TINY_VISION, relative_error, run_config, seeded_tower  # noqa: E402
from nv_helpers import request as vl_request  # noqa: E402

# Max |error| relative to max |reference| against the fp32 CPU tower. The CPU's own bf16 tower is at
# ~7e-3 on these packs (test_vision_compiled_cpu); fp32 on Neuron only differs by op approximations.
TOLERANCE = {"bfloat16": 2e-2, "float32": 2e-3}


@pytest.fixture(scope="module", params=["bfloat16", "float32"])
def compiled_tiny_tower(request, tmp_path_factory):
    dtype = request.param
    config = VisionConfig(**TINY_VISION)
    out = tmp_path_factory.mktemp(f"trn2-vision-{dtype}")
    vision_encoder.compile_tower_module(seeded_tower(config), config, out, BUCKETS, dtype,
                                        compiler_workdir=out / "work", progress=print)
    return dtype, config, out


def test_compiled_tower_matches_cpu(compiled_tiny_tower):
    dtype, config, out = compiled_tiny_tower
    manifest = read_manifest(out)
    assert manifest.backend == "neuron" and manifest.sdk_versions.get("torch-neuronx")
    towers = vision_encoder.load_vision_towers(out, run_buckets=BUCKETS)
    reference = seeded_tower(config)
    for bucket in BUCKETS:
        pack = mixed_pack(config, bucket, torch.float32)  # fp32 packs, as an fp32 text engine builds them
        ours = towers.run(pack)
        expected = reference(*pack.tower_inputs())
        assert ours.shape == expected.shape and ours.dtype == getattr(torch, dtype)
        error = relative_error(real_rows(pack, ours), real_rows(pack, expected))
        print(f"{dtype} bucket {bucket}: max relative error vs CPU fp32 {error:.2e}")
        assert error < TOLERANCE[dtype]


def test_vl_tokens_equal_the_cpu_reference(request, nv_images, tmp_path):
    import transformers

    if not hasattr(transformers, "Qwen3_5MoeConfig"):
        pytest.skip("the tiny checkpoint is built from transformers' Qwen3_5Moe classes (transformers >= 5.2)")
    model_dir = request.getfixturevalue("nv_model_dir")
    manifest = vision_encoder.compile_vision_tower(model_dir, tmp_path / "vision", BUCKETS, "float32",
                                                   compiler_workdir=tmp_path / "work", progress=print)
    assert manifest.buckets == BUCKETS
    cases = ["one_image", "two_images", "one_image"]
    run = run_config(batch_size=len(cases))
    runner = vision_encoder.load_vision_runner(tmp_path / "vision", model_dir, run_buckets=run.vision_buckets,
                                               check_weights=True)
    _, compiled = load_vl_session(model_dir, run, runner=runner)
    _, eager = load_vl_session(model_dir, run)
    requests = [vl_request(c, nv_images) for c in cases]
    ours = generate_vl(compiled, requests, NEW_TOKENS, eos_token_ids=())
    reference = generate_vl(eager, requests, NEW_TOKENS, eos_token_ids=())
    for row in range(len(cases)):
        diff = (torch.stack(ours.logits[row]) - torch.stack(reference.logits[row])).abs().max().item()
        print(f"row {row} ({cases[row]}): tokens equal {ours.tokens[row] == reference.tokens[row]}, "
              f"max |logit diff| {diff:.2e}")
        assert ours.tokens[row] == reference.tokens[row]
        assert diff < 1e-2
