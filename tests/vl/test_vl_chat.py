"""`generate --chat --image`: images become image parts of the user message, so the chat template
writes their tokens; the tokens equal transformers' on the template's ids with the same images."""

from __future__ import annotations

import json

from qwen35_neuron.cli.main import main
from qwen35_neuron.cli.prompts import chat_messages
from qwen35_neuron.testing.reference import hf_greedy
from qwen35_neuron.vision.preprocess import preprocess_images
from qwen35_neuron.vl import VLRequest
from vl_helpers import EOS, IMAGE, NEW_TOKENS

CHAT_RUN = ["--buckets", "64,128", "--max-seq-len", "160", "--vision-buckets", "32,64"]


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _template_ids(vl_dir, text, images, **kwargs):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(vl_dir, local_files_only=True)
    return list(tokenizer.apply_chat_template(chat_messages(text, images=images), add_generation_prompt=True,
                                              return_dict=True, **kwargs)["input_ids"])


def test_chat_images_equal_transformers(capsys, vl_dir, images, hf_models, make_vl):
    code, out, _ = _run(capsys, "generate", "--model", vl_dir, "--chat", "--prompt", "Describe both.", "--image",
                        images["wide"], "--image", images["tall"], "--max-new-tokens", str(NEW_TOKENS), "--json",
                        *CHAT_RUN)
    assert code == 0
    ids = _template_ids(vl_dir, "Describe both.", 2)
    assert ids.count(IMAGE) == 2
    session = make_vl(context_buckets=(64, 128), max_seq_len=160)
    request = VLRequest(ids, [images["wide"], images["tall"]])
    expanded = session.prepare([request]).prompts[0]
    processed = preprocess_images(list(request.images), session.processor)
    expected, _ = hf_greedy(hf_models("default", "conditional"), expanded, NEW_TOKENS, EOS,
                            pixel_values=processed.pixel_values, image_grid_thw=processed.grids, image_token_id=IMAGE)
    assert json.loads(out)["tokens"] == [expected]


def test_chat_batch_takes_one_image_per_prompt(capsys, vl_dir, images):
    code, out, _ = _run(capsys, "generate", "--model", vl_dir, "--chat", "--prompt", "First?", "--prompt", "Second?",
                        "--image", images["wide"], "--image", images["square"], "--max-new-tokens", "3", "--json",
                        "--no-thinking", *CHAT_RUN)
    assert code == 0
    by_ids = []
    for text, image in (("First?", "wide"), ("Second?", "square")):
        ids = _template_ids(vl_dir, text, 1, enable_thinking=False)
        by_ids += ["--input-ids", ",".join(map(str, ids)), "--image", images[image]]
    code, expected, _ = _run(capsys, "generate", "--model", vl_dir, *by_ids, "--max-new-tokens", "3", "--json",
                             *CHAT_RUN)
    assert code == 0 and json.loads(out) == json.loads(expected)


def test_chat_image_count_that_cannot_be_placed_is_one_line(capsys, vl_dir, images):
    code, _, err = _run(capsys, "generate", "--model", vl_dir, "--chat", "--prompt", "a", "--prompt", "b",
                        "--image", images["wide"], "--image", images["tall"], "--image", images["square"], *CHAT_RUN)
    assert code == 2 and "give one --image per --prompt" in err and err.count("\n") == 1
