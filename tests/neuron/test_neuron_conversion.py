"""HF -> Neuron checkpoint for the real 35B-A3B config at TP 4 and 8, from the config alone (meta tensors)."""

from __future__ import annotations

import pytest
import torch

from qwen35_neuron.checkpoint.expected import expected_text_shapes
from qwen35_neuron.errors import UnsupportedConfigError
from qwen35_neuron.neuron_layout.layout import RANK_UTIL_KEY, neuron_checkpoint, nxd_moe_tensor, tie_lm_head


def meta_checkpoint(text):
    return [(name, torch.empty(shape, device="meta")) for name, shape in expected_text_shapes(text).items()]


def converted(text, tp, backend="ours"):
    return {name: t for name, t in neuron_checkpoint(meta_checkpoint(text), text, tp, backend)}


@pytest.mark.parametrize("tp", [4, 8])
def test_ours_names_and_shapes(config_35b, tp):
    text = config_35b.text
    out = converted(text, tp)
    hf = expected_text_shapes(text)
    assert list(out) == list(hf) + [RANK_UTIL_KEY]
    assert len(out) == 694
    # only the replicated KV heads change shape: 2 heads of 256 become one per rank, stacked rank-major
    changed = {name: tuple(t.shape) for name, t in out.items() if name in hf and tuple(t.shape) != hf[name]}
    kv = {f"layers.{i}.self_attn.{p}_proj.weight": (tp * 256, 2048) for i in range(3, 40, 4) for p in "kv"}
    assert changed == kv
    assert tuple(out["layers.0.mlp.experts.gate_up_proj"].shape) == (256, 1024, 2048)
    assert tuple(out["layers.0.linear_attn.in_proj_qkv.weight"].shape) == (8192, 2048)
    assert out[RANK_UTIL_KEY].tolist() == list(range(tp)) and out[RANK_UTIL_KEY].dtype == torch.int32


@pytest.mark.parametrize("tp", [4, 8])
def test_nxd_moe_layout(config_35b, tp):
    out = converted(config_35b.text, tp, "nxd")
    assert "layers.0.mlp.experts.gate_up_proj" not in out and "layers.0.mlp.gate.weight" not in out
    assert tuple(out["layers.5.mlp.router.linear_router.weight"].shape) == (256, 2048)
    assert tuple(out["layers.5.mlp.expert_mlps.mlp_op.gate_up_proj.weight"].shape) == (256, 2048, 1024)
    assert tuple(out["layers.5.mlp.expert_mlps.mlp_op.down_proj.weight"].shape) == (256, 512, 2048)
    assert out["layers.39.mlp.expert_mlps.spmd_rank.rank"].tolist() == list(range(tp))
    assert len(out) == 694 + 40  # one SPMD rank per layer's expert MLPs
    # the shared expert keeps our names and our rank-major layout
    assert tuple(out["layers.5.mlp.shared_expert.gate_proj.weight"].shape) == (512, 2048)


def test_nxd_expert_layout_is_the_strided_cut_of_our_shards():
    """NxD cuts gate_up with stride 2 (rank r: [gate_r | up_r]); that must equal our expert shard."""
    experts, inter, hidden, tp = 3, 8, 5, 4
    gate_up = torch.randn(experts, 2 * inter, hidden)
    _, nxd = nxd_moe_tensor("layers.0.mlp.experts.gate_up_proj", gate_up)
    pieces = torch.split(nxd, inter // tp, dim=2)  # per-stride blocks, as NxD's create_local_weight splits
    for rank in range(tp):
        mine = torch.cat(pieces[rank::tp], dim=2).transpose(1, 2)
        gate, up = gate_up.chunk(2, dim=1)
        step = inter // tp
        expected = torch.cat([gate[:, rank * step:(rank + 1) * step], up[:, rank * step:(rank + 1) * step]], dim=1)
        assert torch.equal(mine, expected)
    down = torch.randn(experts, hidden, inter)
    name, nxd_down = nxd_moe_tensor("layers.0.mlp.experts.down_proj", down)
    assert name.endswith("expert_mlps.mlp_op.down_proj.weight") and torch.equal(nxd_down.transpose(1, 2), down)
    assert nxd_moe_tensor("layers.0.mlp.shared_expert.gate_proj.weight", down) is None


def test_unsupported_tp_and_backend_fail_early(config_35b):
    with pytest.raises(UnsupportedConfigError, match="num_attention_heads"):
        converted(config_35b.text, 32)
    with pytest.raises(ValueError, match="moe_backend"):
        next(neuron_checkpoint({}, config_35b.text, 4, "megablocks"))


def test_tied_embeddings_fill_the_lm_head():
    embed = torch.ones(3, 2)
    state = tie_lm_head({"embed_tokens.weight": embed})
    assert state["lm_head.weight"] is embed
    head = torch.zeros(3, 2)
    assert tie_lm_head({"embed_tokens.weight": embed, "lm_head.weight": head})["lm_head.weight"] is head

