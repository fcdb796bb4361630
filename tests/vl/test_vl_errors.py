"""Bad VL input: one clear InputError each, raised before any state changes or any tower work."""

from __future__ import annotations

import copy

import pytest
import torch

from qwen35_neuron.config import load_model_config
from qwen35_neuron.errors import InputError
from qwen35_neuron.runtime.vl_session import load_vl_session
from qwen35_neuron.vl import VLRequest, generate_vl, tower_runner
from qwen35_neuron.vl.vision_runner import load_vision_tower
from vl_helpers import IMAGE, NEW_TOKENS, request, run_config

BAD = {
    "more_placeholders": (lambda im: VLRequest([1, IMAGE, 2, IMAGE], [im["wide"]]),
                          "2 image placeholders (token 250) but only 1 image(s) were given"),
    "more_images": (lambda im: VLRequest([1, IMAGE, 2], [im["wide"], im["tall"]]),
                    "1 image placeholders (token 250) but 2 image(s) were given"),
    "unreadable": (lambda im: VLRequest([1, IMAGE], [im["broken"]]), "cannot read image"),
    "missing_file": (lambda im: VLRequest([1, IMAGE], [im["broken"] + ".absent"]), "cannot read image"),
    "too_many_patches": (lambda im: VLRequest([1, IMAGE], [im["big"]]),
                         "144 patches (grid t=1 x h=12 x w=12) but the largest vision bucket holds 64"),
    "expanded_too_long": (lambda im: VLRequest([1] * 40 + [IMAGE] * 4, [im["wide"]] * 4),
                          "a prompt of 64 tokens and max_new_tokens 4 need 68 cache slots per row, but the cache holds 64"),
}


@pytest.fixture
def busy_session(vl_dir, images):
    """A session whose row 1 is mid-generation of an image request, with a runner that counts calls."""
    calls: list[int] = []
    tower = tower_runner(load_vision_tower(vl_dir, load_model_config(vl_dir)))

    def runner(pack):
        calls.append(pack.bucket)
        return tower(pack)

    _, session = load_vl_session(vl_dir, run_config(), runner=runner)
    session.prefill([request("one_image", images)], rows=[1], max_new_tokens=NEW_TOKENS)
    session.decode()
    calls.clear()
    return session, calls


@pytest.mark.parametrize("name", list(BAD))
def test_bad_request_is_rejected_before_anything_changes(busy_session, images, name):
    session, calls = busy_session
    make_bad, message = BAD[name]
    states = [s.clone() for s in session.engine.states[0]]
    rows = copy.deepcopy(session.rows)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        session.prefill([request("no_image", images), make_bad(images)], rows=[0, 2], max_new_tokens=4)
    assert calls == []  # no vision tower work either
    assert session.rows == rows
    assert all(torch.equal(a, b) for a, b in zip(states, session.engine.states[0]))
    assert any(s.abs().sum() > 0 for s in states)  # row 1 really holds state


def test_generate_with_a_bad_request_leaves_the_engine_alone(busy_session, images):
    session, _ = busy_session
    states = [s.clone() for s in session.engine.states[0]]
    with pytest.raises(InputError, match="cannot read image"):
        generate_vl(session, [request("one_image", images), BAD["unreadable"][0](images)], NEW_TOKENS)
    assert all(torch.equal(a, b) for a, b in zip(states, session.engine.states[0]))


def test_bad_rows_are_rejected(busy_session, images):
    session, calls = busy_session
    with pytest.raises(InputError, match="row 9 does not exist"):
        session.prefill([request("one_image", images)], rows=[9])
    assert calls == []
