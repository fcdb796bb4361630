"""Trainium2 tests of images through the compiled text graphs: NeuronVLSession == the CPU VL path.

Marked ``neuron``; they skip cleanly where torch-neuronx is not installed. Run on a trn2 host:

    python -m pytest tests/neuron/test_trn2_vl.py -m neuron -v

The tiny checkpoint's text model is compiled at TP 2 (fp32, our NKI kernels) and its vision tower per
patch bucket; tokens must equal the CPU VL path (whose tokens equal transformers', tests/vl) for
prompts with 0, 1 and 2 images, alone and batched; a text request after an image request in the same
row must equal the text request alone; text through NxDI's HF adapter must still equal the direct loop.
"""

from __future__ import annotations

import pytest

from qwen35_neuron.config.neuron_settings import NeuronSettings
from qwen35_neuron.runtime.vl_session import load_vl_session
from qwen35_neuron.vl import generate_vl
from vl_cases import CASES, MIXED, NEW_TOKENS, VISION_BUCKETS, cpu_run_config, request

pytestmark = [pytest.mark.neuron, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
pytest.importorskip("torch_neuronx", reason="needs a Trainium2 host with the Neuron SDK (torch-neuronx)")

SETTINGS = NeuronSettings(tp_degree=2, lnc=2, batch_size=4, context_buckets=(16, 32), max_length=64,
                          dtype="float32", gdr_chunk_size=8)


@pytest.fixture(scope="module")
def compiled(neuron_vl_dir, tmp_path_factory):
    """(loaded application, compiled vision directory) of the tiny VL checkpoint."""
    from qwen35_neuron.neuron import Qwen35MoeForCausalLM, inference_config
    from qwen35_neuron.neuron.vision_encoder import compile_vision_tower

    text_dir = tmp_path_factory.mktemp("trn2-vl-text")
    Qwen35MoeForCausalLM(neuron_vl_dir, inference_config(neuron_vl_dir, SETTINGS)).compile(str(text_dir))
    model = Qwen35MoeForCausalLM(str(text_dir))
    model.load(str(text_dir))
    vision_dir = tmp_path_factory.mktemp("trn2-vl-vision")
    compile_vision_tower(neuron_vl_dir, vision_dir, VISION_BUCKETS, "float32", compiler_workdir=vision_dir / "work")
    return model, str(vision_dir)


@pytest.fixture(scope="module")
def session(compiled):
    from qwen35_neuron.neuron.vl_session import load_neuron_vl_session

    model, vision_dir = compiled
    return load_neuron_vl_session(model, vision_compiled=vision_dir)


@pytest.fixture(scope="module")
def cpu_vl(neuron_vl_dir):
    return load_vl_session(neuron_vl_dir, cpu_run_config(SETTINGS))[1]


@pytest.mark.parametrize("cases", [["no_image"], ["one_image"], ["two_images"], MIXED])
def test_tokens_equal_the_cpu_vl_path(session, cpu_vl, neuron_vl_images, cases):
    requests = [request(c, neuron_vl_images) for c in cases]
    ours = generate_vl(session, requests, NEW_TOKENS)
    assert ours.tokens == generate_vl(cpu_vl, requests, NEW_TOKENS).tokens
    assert min(len(t) for t in ours.tokens) >= 1


def test_text_after_image_in_the_same_row(session, neuron_vl_images):
    session.reset()
    session.prefill([request("one_image", neuron_vl_images)], rows=[0], max_new_tokens=NEW_TOKENS)
    for _ in range(3):
        session.decode()
    first = session.prefill([request("no_image", neuron_vl_images)], rows=[0], max_new_tokens=NEW_TOKENS)
    tokens = first + [session.decode()[0] for _ in range(NEW_TOKENS - 1)]
    alone = generate_vl(session, [request("no_image", neuron_vl_images)], NEW_TOKENS, eos_token_ids=())
    assert tokens == alone.tokens[0]


def test_text_users_keep_the_adapter_and_the_direct_loop(compiled, neuron_vl_dir):
    """The same graphs serve text without llava_args: the HF adapter and generate_direct agree with
    each other and with the CPU runtime."""
    from qwen35_neuron.neuron.generation import generate_direct, generate_with_adapter
    from qwen35_neuron.runtime.loading import load_engine
    from qwen35_neuron.runtime.session import generate

    model, _ = compiled
    prompts = [list(CASES["no_image"][0]), [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]]
    direct = generate_direct(model, prompts, 6).tokens
    assert generate_with_adapter(model, prompts, 6) == direct
    assert direct == generate(load_engine(neuron_vl_dir, cpu_run_config(SETTINGS))[1], prompts, 6,
                              eos_token_ids=()).tokens
