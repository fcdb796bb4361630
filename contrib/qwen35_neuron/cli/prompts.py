"""The prompts a user typed, as token ids: ``--input-ids``, raw ``--prompt`` text, or ``--chat`` messages.

``--chat`` runs each ``--prompt`` (a user message, after an optional ``--system`` message) through
the checkpoint's own chat template with its tokenizer (transformers' ``apply_chat_template``,
``add_generation_prompt=True``, ``enable_thinking`` passed only when ``--enable-thinking`` /
``--no-thinking`` is given, so the template's default holds otherwise): the ids are exactly
``apply_chat_template``'s. Images become image parts of the user message, placed before its
text, so the template writes its own image tokens (``<|vision_start|><|image_pad|><|vision_end|>``
in Qwen3.5's); one prompt takes every ``--image``, several prompts take one image each.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..errors import InputError
from ..vl import IMAGE_PAD_TEXT, encode_with_placeholders
from .options import parse_id_list

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def add_prompt_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input-ids", action="append", default=[],
                        help='prompt token ids, e.g. "1,2,3"; repeat for a batch')
    parser.add_argument("--prompt", action="append", default=[],
                        help="prompt text (needs a tokenizer in the checkpoint); repeat for a batch")
    chat = parser.add_argument_group("chat (the checkpoint's chat template)")
    chat.add_argument("--chat", action="store_true",
                      help="each --prompt is a user message rendered by the model's chat template")
    chat.add_argument("--system", default=None, help="system message before each --chat prompt")
    thinking = chat.add_mutually_exclusive_group()
    thinking.add_argument("--enable-thinking", dest="enable_thinking", action="store_true", default=None,
                          help="open the reply with a thinking block (the template's default for Qwen3.5)")
    thinking.add_argument("--no-thinking", dest="enable_thinking", action="store_false",
                          help="close an empty thinking block first, so the model answers directly")


def check_prompt_options(args: argparse.Namespace) -> None:
    """The combinations that cannot work, refused before anything is loaded."""
    if bool(args.input_ids) == bool(args.prompt):
        raise InputError("give either --input-ids or --prompt (one or more times), not both and not neither")
    if args.chat and args.input_ids:
        raise InputError("--chat renders --prompt text through the chat template: use --prompt, not --input-ids")
    if not args.chat and (args.system is not None or args.enable_thinking is not None):
        used = "--system" if args.system is not None else ("--enable-thinking" if args.enable_thinking
                                                             else "--no-thinking")
        raise InputError(f"{used} belongs to a chat prompt: add --chat")


def load_tokenizer(model_dir: str | Path, need: str = "--prompt") -> Any:
    """The checkpoint's tokenizer (transformers' AutoTokenizer, local files only)."""
    if not any((Path(model_dir) / name).is_file() for name in TOKENIZER_FILES):
        raise InputError(f"{need} needs a tokenizer, but {model_dir} has no tokenizer.json: use --input-ids")
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except Exception as err:  # noqa: BLE001 - transformers raises many kinds for a broken tokenizer file
        first = str(err).splitlines()[0] if str(err) else ""
        if "does not exist or is not currently imported" in first and (Path(model_dir) / "tokenizer.json").is_file():
            # a tokenizer class newer than this transformers (Qwen3_5Tokenizer: transformers 5; NxDI pins
            # 4.57 on a trn2 host): tokenizer.json, its special tokens and chat template are all it needs
            return PreTrainedTokenizerFast.from_pretrained(str(model_dir), local_files_only=True)
        raise InputError(f"cannot load the tokenizer of {model_dir} ({type(err).__name__}: {first}): fix or remove "
                         "its tokenizer files, or use --input-ids") from err


def images_per_chat_prompt(prompts: int, images: int) -> list[int]:
    """One prompt takes every image; several prompts take one image each (or none at all)."""
    if images == 0:
        return [0] * prompts
    if prompts == 1:
        return [images]
    if images == prompts:
        return [1] * prompts
    raise InputError(f"--chat with {prompts} prompts and {images} images: give one --image per --prompt "
                     "(each message gets its own), or a single --prompt for several images")


def chat_messages(text: str, system: str | None = None, images: int = 0) -> list[dict[str, Any]]:
    """OpenAI/transformers-style messages: the system message, then the user's image and text parts."""
    content: str | list[dict[str, str]] = text
    if images:
        content = [{"type": "image"} for _ in range(images)] + [{"type": "text", "text": text}]
    messages = [{"role": "system", "content": system}] if system is not None else []
    return messages + [{"role": "user", "content": content}]


def chat_prompt_ids(tokenizer: Any, messages: list[dict[str, Any]], enable_thinking: bool | None = None) -> list[int]:
    """``apply_chat_template``'s ids for ``messages``, ready for the assistant's reply."""
    if not getattr(tokenizer, "chat_template", None):
        raise InputError("--chat needs the model's chat template, but its tokenizer has none "
                         "(no chat_template.jinja or chat_template in tokenizer_config.json): drop --chat")
    extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    try:
        encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                return_dict=True, **extra)
    except Exception as err:  # the template's own raise_exception, or a broken template
        raise InputError(f"the model's chat template refused the messages: {err}") from err
    return [int(t) for t in encoded["input_ids"]]


def prompt_ids(args: argparse.Namespace, config: ModelConfig, tokenizer: Any, images: int = 0) -> list[list[int]]:
    """Token ids of every prompt; image placeholders (one ``image_token_id`` each) where images go."""
    if args.input_ids:
        return [parse_id_list(text) for text in args.input_ids]
    if args.chat:
        if images and config.vision is not None:
            pad = tokenizer.convert_tokens_to_ids(IMAGE_PAD_TEXT)
            if pad != config.image_token_id:
                raise InputError(f"the tokenizer's {IMAGE_PAD_TEXT} is id {pad} but config.json's image_token_id is "
                                 f"{config.image_token_id}: the tokenizer does not belong to this checkpoint")
        counts = images_per_chat_prompt(len(args.prompt), images)
        return [chat_prompt_ids(tokenizer, chat_messages(text, args.system, count), args.enable_thinking)
                for text, count in zip(args.prompt, counts)]
    if config.vision is not None:  # a VL checkpoint: a literal <|image_pad|> in the text is one placeholder
        return [encode_with_placeholders(tokenizer, text, config.image_token_id) for text in args.prompt]
    return [[int(t) for t in tokenizer.encode(text)] for text in args.prompt]


def decode_replies(tokenizer: Any, tokens: list[list[int]]) -> list[str]:
    return [tokenizer.decode(row, skip_special_tokens=True) for row in tokens]
