"""Memory-bounded loading and conversion: the CPU engine is built on the meta device and filled in the
run dtype, tensor by tensor (no copy of what was read, no fp32 weights in a bf16 run), and NxD's
per-rank checkpoint files are written one tensor at a time with exactly the pieces NxD's sharder
would cut. (The memory these save is measured by compile_scripts/bench_memory.py.)"""

from __future__ import annotations

import weakref

import pytest
import torch
from safetensors.torch import load_file

from qwen35_neuron.checkpoint import iter_text_tensors, load_text_state_dict
from qwen35_neuron.checkpoint.expected import expected_text_shapes
from qwen35_neuron.config import RunConfig, load_model_config
from qwen35_neuron.model.rotary import MultimodalRotary
from qwen35_neuron.neuron_layout.layout import neuron_checkpoint, tie_lm_head
from qwen35_neuron.neuron_layout.rank_files import nxd_cut, nxd_split, rank_file_name, write_rank_checkpoints
from qwen35_neuron.runtime.engine import TextEngine
from qwen35_neuron.runtime.loading import load_engine
from qwen35_neuron.runtime.session import generate
from qwen35_neuron.testing import build_tiny_checkpoint, tiny_config_dict
from tiny_models import PROMPTS

RUN = dict(batch_size=3, context_buckets=(16,), max_seq_len=32, gdr_chunk_size=8)


@pytest.fixture(scope="module")
def bf16_dir(tmp_path_factory) -> str:
    return str(build_tiny_checkpoint(tmp_path_factory.mktemp("bf16"), seed=5, dtype=torch.bfloat16))


def _weights(engine: TextEngine):
    return [(name, t) for model in engine.models for name, t in model.state_dict(keep_vars=True).items()]


@pytest.mark.parametrize("backend, tp", [("dense", 1), ("simulated-tp", 2)])
def test_bf16_run_holds_bf16_weights_only(bf16_dir, backend, tp):
    config, engine = load_engine(bf16_dir, RunConfig(backend=backend, tp_degree=tp, dtype="bfloat16", **RUN))
    weights = _weights(engine)
    assert weights and all(t.dtype == torch.bfloat16 and not t.is_meta for _, t in weights)
    for model in engine.models:  # the rotary frequencies are computed, in fp32, not cast
        assert model.rotary.inv_freq.dtype == torch.float32
        assert torch.equal(model.rotary.inv_freq, MultimodalRotary(config.text).inv_freq)
        assert not any(p.requires_grad for p in model.parameters())


def test_streamed_engine_equals_the_state_dict_engine(tiny_dir):
    for dtype in ("float32", "bfloat16"):
        run = RunConfig(dtype=dtype, **RUN)
        config, streamed = load_engine(tiny_dir, run)
        from_dict = TextEngine.from_state_dict(config.text, run, load_text_state_dict(tiny_dir))
        for (name, a), (_, b) in zip(_weights(streamed), _weights(from_dict)):
            assert torch.equal(a, b), name
        prompts = [list(p) for p in PROMPTS]
        assert generate(streamed, prompts, 6).tokens == generate(from_dict, prompts, 6).tokens


def test_weights_are_assigned_not_copied(bf16_dir):
    """In the stored dtype at TP 1 every parameter is the very tensor that was read."""
    config = load_model_config(bf16_dir)
    pointers = {}

    def stream():
        for name, tensor in iter_text_tensors(bf16_dir, config, dtype=torch.bfloat16):
            pointers[name] = tensor.data_ptr()
            yield name, tensor

    engine = TextEngine.from_state_dict(config.text, RunConfig(dtype="bfloat16", **RUN), stream())
    params = dict(engine.models[0].named_parameters())
    assert pointers.keys() == params.keys()
    assert all(params[name].data_ptr() == pointer for name, pointer in pointers.items())


def test_tied_head_is_the_embedding(tmp_path):
    path = build_tiny_checkpoint(tmp_path / "tied", tiny_config_dict(tie_word_embeddings=True), seed=2)
    _, engine = load_engine(path, RunConfig(dtype="bfloat16", **RUN))
    model = engine.models[0]
    assert model.lm_head.weight.data_ptr() == model.embed_tokens.weight.data_ptr()


def _nxd_reference(model_dir: str, tp: int, backend: str, dtype: torch.dtype) -> list[dict[str, torch.Tensor]]:
    """What NxD's sharder gives each rank from the whole converted checkpoint (get_state_dict's dict)."""
    text = load_model_config(model_dir).text
    whole = tie_lm_head(dict(neuron_checkpoint(iter_text_tensors(model_dir, text, dtype=dtype), text, tp, backend)))
    return [{name: nxd_cut(t, nxd_split(name), tp, rank).contiguous() for name, t in whole.items()}
            for rank in range(tp)]


@pytest.mark.parametrize("tp, backend", [(1, "ours"), (2, "ours"), (4, "ours"), (2, "nxd"), (4, "nxd")])
def test_rank_files_hold_what_nxd_would_cut(tiny_dir, tmp_path, tp, backend):
    text = load_model_config(tiny_dir).text
    stream = iter_text_tensors(tiny_dir, text, dtype=torch.bfloat16)
    paths = write_rank_checkpoints(stream, expected_text_shapes(text), text, tp, tmp_path, moe_backend=backend,
                                   dtype=torch.bfloat16)
    assert [p.name for p in paths] == [rank_file_name(r) for r in range(tp)]
    for rank, expected in enumerate(_nxd_reference(tiny_dir, tp, backend, torch.bfloat16)):
        written = load_file(str(paths[rank]))
        assert written.keys() == expected.keys()
        for name, tensor in expected.items():
            assert written[name].dtype == tensor.dtype and torch.equal(written[name], tensor), (rank, name)
    if tp > 1:
        assert load_file(str(paths[1]))["rank_util.rank"].tolist() == [1]


def test_local_ranks_only(tiny_dir, tmp_path):
    text = load_model_config(tiny_dir).text
    paths = write_rank_checkpoints(iter_text_tensors(tiny_dir, text, dtype=torch.bfloat16), expected_text_shapes(text),
                                   text, 4, tmp_path, ranks=[2, 3])
    assert [p.name for p in paths] == [rank_file_name(2), rank_file_name(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_writer_holds_one_tensor_at_a_time(tiny_dir, tmp_path):
    """When the next tensor is read, the previous one (and every piece cut from it) is gone."""
    text = load_model_config(tiny_dir).text
    alive: list[weakref.ref] = []

    def stream():
        for name, tensor in iter_text_tensors(tiny_dir, text, dtype=torch.float32):
            assert all(ref() is None for ref in alive), f"a tensor before {name} is still held"
            alive.append(weakref.ref(tensor))
            yield name, tensor
            del tensor

    write_rank_checkpoints(stream(), expected_text_shapes(text), text, 2, tmp_path, dtype=torch.float32)
    assert len(alive) == len(expected_text_shapes(text))
