"""KV cache writes: one in-place scatter at the cache positions; pads and idle rows change nothing."""

from __future__ import annotations

import torch

from qwen35_neuron.model.attention import write_cache
from qwen35_neuron.model.step import StepInputs


def test_real_slots_land_at_their_positions_and_pads_change_nothing_even_past_the_end():
    gen = torch.Generator().manual_seed(0)
    cache = torch.randn(3, 2, 16, 4, generator=gen)
    new = torch.randn(3, 2, 8, 4, generator=gen)
    # row 0: a prompt at 0; row 1: a chunk at 13 (3 real slots fill the cache, 5 pads wrap past it);
    # row 2: no tokens at all (an idle row, any position)
    step = StepInputs.build(torch.tensor([0, 13, 5]), torch.tensor([5, 3, 0]), 8)
    out = write_cache(cache, new, step)
    want = cache.clone()
    want[0, :, 0:5] = new[0, :, 0:5]
    want[1, :, 13:16] = new[1, :, 0:3]
    assert torch.equal(out, want)


def test_a_token_generation_step_writes_one_slot_per_active_row():
    cache = torch.zeros(2, 1, 8, 2)
    new = torch.ones(2, 1, 1, 2)
    out = write_cache(cache, new, StepInputs.build(torch.tensor([7, 3]), torch.tensor([1, 0]), 1))
    assert out.sum() == 2 and torch.equal(out[0, 0, 7], torch.ones(2)) and not out[1].any()
