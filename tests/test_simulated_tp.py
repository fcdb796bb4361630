"""Simulated tensor parallelism (R virtual ranks, each with only its shard) equals the dense model."""

from __future__ import annotations

import pytest
import torch

from tiny_models import PROMPTS, make_engine
from qwen35_neuron.config import parse_model_config
from qwen35_neuron.errors import UnsupportedConfigError
from qwen35_neuron.config.tp_shapes import check_tp_supported
from qwen35_neuron.parallel.sharding import shard_text_state_dict
from qwen35_neuron.runtime.session import generate
from qwen35_neuron.testing.tiny import tiny_config_dict


@pytest.mark.parametrize("tp, moe_impl", [(2, "eager"), (4, "static")])
def test_simulated_tp_equals_dense(tiny_dir, tp, moe_impl):
    dense = generate(make_engine(tiny_dir), [list(p) for p in PROMPTS], 10, eos_token_ids=())
    sharded = generate(make_engine(tiny_dir, backend="simulated-tp", tp_degree=tp, moe_impl=moe_impl),
                       [list(p) for p in PROMPTS], 10, eos_token_ids=())
    assert sharded.tokens == dense.tokens
    for ours, ref in zip(sharded.logits, dense.logits):
        assert (torch.stack(ours) - torch.stack(ref)).abs().max() < 1e-4


def test_each_rank_holds_only_its_shard(tiny_dir):
    engine = make_engine(tiny_dir, backend="simulated-tp", tp_degree=2)
    full = make_engine(tiny_dir).models[0]
    rank1 = engine.models[1]
    qkv = rank1.layers[0].linear_attn.in_proj_qkv.weight
    assert qkv.shape[0] == full.layers[0].linear_attn.in_proj_qkv.weight.shape[0] // 2
    assert rank1.layers[0].mlp.experts.down_proj.shape[-1] == full.layers[0].mlp.experts.down_proj.shape[-1] // 2


def test_deltanet_qkv_is_split_by_section_not_by_rows():
    text = parse_model_config(tiny_config_dict()).text  # key dim 32, value dim 64 -> conv_dim 128
    rows = torch.arange(text.linear_conv_dim, dtype=torch.float)[:, None]
    rank1 = shard_text_state_dict({"layers.0.linear_attn.in_proj_qkv.weight": rows}, text, 2, 1)
    got = rank1["layers.0.linear_attn.in_proj_qkv.weight"][:, 0].long().tolist()
    key, value = text.linear_key_dim, text.linear_value_dim
    expected = (list(range(key // 2, key)) + list(range(key + key // 2, 2 * key))
                + list(range(2 * key + value // 2, 2 * key + value)))
    assert got == expected


def test_kv_heads_are_replicated_when_fewer_than_ranks():
    text = parse_model_config(tiny_config_dict(num_key_value_heads=1)).text
    k = torch.arange(text.head_dim, dtype=torch.float)[:, None]
    shards = [shard_text_state_dict({"layers.3.self_attn.k_proj.weight": k}, text, 4, r) for r in range(4)]
    assert all(torch.equal(s["layers.3.self_attn.k_proj.weight"], k) for s in shards)


def test_unshardable_tp_degree_names_the_dimension():
    text = parse_model_config(tiny_config_dict()).text
    with pytest.raises(UnsupportedConfigError, match="num_key_value_heads .2. and tp_degree 3"):
        check_tp_supported(text, 3)


def test_conversion_cut_contiguously_gives_each_ranks_shard(tiny_dir):
    """NxD cuts converted tensors into R contiguous pieces: each piece must be our rank shard."""
    from qwen35_neuron.checkpoint import load_text_state_dict
    from qwen35_neuron.parallel.conversion import convert_text_state_dict, partition_dim, rank_slice
    from qwen35_neuron.parallel.sharding import shard_text_tensor

    text = parse_model_config(tiny_config_dict()).text
    state = load_text_state_dict(tiny_dir)
    converted = dict(convert_text_state_dict(state, text, 4))
    assert converted.keys() == state.keys()
    for name, tensor in converted.items():
        dim = partition_dim(name)
        if dim is None:
            assert tensor is state[name]
            continue
        for rank in range(4):
            piece = tensor.chunk(4, dim=dim)[rank]
            assert torch.equal(piece, shard_text_tensor(name, state[name], text, 4, rank)), name
            assert torch.equal(rank_slice(name, tensor, 4, rank), piece)
