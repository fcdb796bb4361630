"""`generate --chat`: prompts through the checkpoint's own chat template (a Qwen3.5-style template on
the tiny byte tokenizer), ids exactly apply_chat_template's, the thinking switch, the one-line errors."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest

from qwen35_neuron.cli.main import main
from qwen35_neuron.cli.prompts import chat_messages, prompt_ids
from qwen35_neuron.config import load_model_config
from qwen35_neuron.testing.reference import hf_greedy
from qwen35_neuron.testing.tiny import TINY_EOS_TOKEN_IDS
from qwen35_neuron.testing.tokenizer import CONTROL_TOKENS, write_tiny_tokenizer

CHAT_RUN = ["--buckets", "64,128", "--max-seq-len", "160"]
THINK, END_THINK, NEWLINE = 248, 247, 10


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def chat_dir(tiny_dir, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("chat") / "model"
    shutil.copytree(tiny_dir, path)
    write_tiny_tokenizer(path)
    return str(path)


@pytest.fixture(scope="module")
def tokenizer(chat_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(chat_dir, local_files_only=True)


def _args(*prompts, system=None, thinking=None):
    return argparse.Namespace(input_ids=[], prompt=list(prompts), chat=True, system=system, enable_thinking=thinking)


@pytest.mark.parametrize("system", [None, "Answer in one word."])
@pytest.mark.parametrize("thinking", [None, True, False])
def test_chat_ids_are_apply_chat_template_ids(chat_dir, tokenizer, system, thinking):
    ours = prompt_ids(_args("What is 2+2?", system=system, thinking=thinking), load_model_config(chat_dir), tokenizer)
    extra = {} if thinking is None else {"enable_thinking": thinking}
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": "What is 2+2?"}]
    theirs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                           **extra)["input_ids"]
    assert ours == [list(theirs)]


def test_template_has_qwen35_structure_and_the_thinking_switch(tokenizer):
    messages = chat_messages("Hi", system="Be brief.", images=1)
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
                    "<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n<|im_start|>assistant\n<think>\n")
    closed = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, enable_thinking=False)
    assert closed == text + "\n</think>\n\n"
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert ids[-2:] == [THINK, NEWLINE] and ids[:1] == [249] and 250 in ids
    assert {t: tokenizer.convert_tokens_to_ids(c) for t, (c, _) in CONTROL_TOKENS.items()} == {
        t: t for t in CONTROL_TOKENS}


def test_thinking_flags_change_only_the_generation_prompt(chat_dir, tokenizer):
    config = load_model_config(chat_dir)
    default, on, off = (prompt_ids(_args("Hi", thinking=t), config, tokenizer)[0] for t in (None, True, False))
    assert default == on and off[:len(on)] == on
    assert off[len(on):] == [NEWLINE, END_THINK, NEWLINE, NEWLINE]


def test_chat_generation_equals_transformers_on_the_template_ids(capsys, chat_dir, tokenizer, hf_models):
    code, out, _ = _run(capsys, "generate", "--model", chat_dir, "--chat", "--prompt", "Tell me a story.",
                        "--system", "You are terse.", "--no-thinking", "--max-new-tokens", "6", "--json", *CHAT_RUN)
    assert code == 0
    ids = tokenizer.apply_chat_template(chat_messages("Tell me a story.", "You are terse."), add_generation_prompt=True,
                                        return_dict=True, enable_thinking=False)["input_ids"]
    expected, _ = hf_greedy(hf_models("default"), list(ids), 6, tuple(TINY_EOS_TOKEN_IDS))
    assert json.loads(out)["tokens"] == [expected]
    by_ids = _run(capsys, "generate", "--model", chat_dir, "--input-ids", ",".join(map(str, ids)),
                  "--max-new-tokens", "6", "--json", *CHAT_RUN)[1]
    assert json.loads(by_ids) == json.loads(out)


def test_chat_batch_and_text_output(capsys, chat_dir):
    code, out, _ = _run(capsys, "generate", "--model", chat_dir, "--chat", "--prompt", "One", "--prompt",
                        "Two, longer", "--max-new-tokens", "3", *CHAT_RUN)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("[0] [") and lines[1].startswith("[1] [")


@pytest.mark.parametrize("extra, message", [
    (["--chat", "--input-ids", "1,2"], "use --prompt, not --input-ids"),
    (["--prompt", "hi", "--system", "x"], "--system belongs to a chat prompt: add --chat"),
    (["--prompt", "hi", "--no-thinking"], "--no-thinking belongs to a chat prompt"),
    (["--prompt", "hi", "--enable-thinking"], "--enable-thinking belongs to a chat prompt"),
])
def test_chat_option_errors_are_one_line(capsys, chat_dir, extra, message):
    code, out, err = _run(capsys, "generate", "--model", chat_dir, *extra, *CHAT_RUN)
    assert code == 2 and message in err and err.count("\n") == 1 and out == ""


def test_chat_without_a_template_or_tokenizer(capsys, tiny_dir, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(tiny_dir, bare)
    code, _, err = _run(capsys, "generate", "--model", str(bare), "--chat", "--prompt", "hi")
    assert code == 2 and "--chat needs a tokenizer" in err and err.count("\n") == 1
    write_tiny_tokenizer(bare, chat_template=None)
    code, _, err = _run(capsys, "generate", "--model", str(bare), "--chat", "--prompt", "hi")
    assert code == 2 and "has none" in err and err.count("\n") == 1
