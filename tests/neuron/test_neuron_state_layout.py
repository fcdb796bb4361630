"""The hybrid cache of the 35B-A3B config: which layer owns which buffer, with shapes and dtypes."""

from __future__ import annotations

import pytest
import torch

from qwen35_neuron.neuron_layout.layout import state_buffers


@pytest.mark.parametrize("tp, conv, heads", [(4, 2048, 8), (8, 1024, 4)])
def test_35b_cache_per_rank(config_35b, tp, conv, heads):
    buffers = state_buffers(config_35b.text, batch_size=2, max_length=4096, dtype=torch.bfloat16, tp_degree=tp)
    assert len(buffers) == 80 and [b.index for b in buffers] == list(range(80))
    assert [b.parameter_name for b in buffers[:2]] == ["past_key_values.0", "past_key_values.1"]
    by_layer: dict[int, list] = {}
    for buf in buffers:
        by_layer.setdefault(buf.layer, []).append(buf)
    assert sorted(by_layer) == list(range(40))
    for layer, owned in by_layer.items():
        kinds = [b.kind for b in owned]
        if layer % 4 == 3:  # gated attention: K and V only, one replicated KV head per rank
            assert kinds == ["k_cache", "v_cache"]
            assert all(b.shape == (2, 1, 4096, 256) and b.dtype == torch.bfloat16 for b in owned)
        else:  # DeltaNet: conv window of the q/k/v channels, fp32 recurrent state; no KV
            assert kinds == ["conv_state", "recurrent_state"]
            assert owned[0].shape == (2, conv, 3) and owned[0].dtype == torch.bfloat16
            assert owned[1].shape == (2, heads, 128, 128) and owned[1].dtype == torch.float32
    total = sum(b.nbytes for b in buffers)
    kv = 20 * 2 * 4096 * 256 * 2
    assert total == kv + 30 * (2 * conv * 3 * 2 + 2 * heads * 128 * 128 * 4)


def test_cache_is_rank_independent(config_35b):
    """Every rank (and every graph) aliases the same shapes: the layout takes no rank argument."""
    a = state_buffers(config_35b.text, 1, 512, torch.bfloat16, 8)
    b = state_buffers(config_35b.text, 1, 512, torch.bfloat16, 8)
    assert a == b
