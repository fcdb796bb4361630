"""A tiny byte-level BPE tokenizer with a Qwen3.5-style chat template, for tiny checkpoints.

Qwen3.5's tokenizer is a byte-level BPE whose control tokens (``<|im_start|>``, ``<|im_end|>``,
``<|vision_start|>``, ``<|image_pad|>``, ``<think>`` ...) sit after the text vocabulary, and its
chat template renders messages between ``<|im_start|>ROLE`` and ``<|im_end|>``, images as
``<|vision_start|><|image_pad|><|vision_end|>``, and opens the assistant turn with ``<think>\\n``
(or a closed, empty thinking block when ``enable_thinking=False``). Ours has the same kind of
``tokenizer.json`` and the same template structure, sized for a 256-token tiny model: every byte that
can occur in UTF-8 text is its own token (id = byte value, no merges), and the control tokens take the
ids of bytes 0xF5-0xFF, which never occur in UTF-8, at the places the tiny checkpoints expect
(image 250, vision start/end 252/253, EOS ``<|im_end|>`` 254 and ``<|endoftext|>`` 255). It loads
through ``AutoTokenizer`` like the real one, so ``apply_chat_template`` runs the real code path.
"""

from __future__ import annotations

import json
from pathlib import Path

# id -> (content, special): special tokens are dropped by decode(skip_special_tokens=True); the
# thinking tags are plain added tokens, as in Qwen3.5's tokenizer (the reply shows them).
CONTROL_TOKENS = {
    245: ("<|vision_pad|>", True),
    246: ("<tool_call>", False),
    247: ("</think>", False),
    248: ("<think>", False),
    249: ("<|im_start|>", True),
    250: ("<|image_pad|>", True),
    251: ("<|video_pad|>", True),
    252: ("<|vision_start|>", True),
    253: ("<|vision_end|>", True),
    254: ("<|im_end|>", True),
    255: ("<|endoftext|>", True),
}
FIRST_CONTROL_ID = min(CONTROL_TOKENS)  # bytes 0xF5..0xFF are never part of UTF-8 text

# Our own template with the structure of Qwen3.5's: a content renderer for strings and lists of
# image/video/text parts, the system message first, user and assistant turns (earlier reasoning
# dropped from assistant turns), and the generation prompt with the thinking switch.
CHAT_TEMPLATE = """\
{%- macro render_content(content, in_system=false) %}
    {%- if content is string %}
        {{- content }}
    {%- elif content is iterable and content is not mapping %}
        {%- for part in content %}
            {%- if part.type == 'image' or 'image' in part or 'image_url' in part %}
                {%- if in_system %}{{- raise_exception('A system message cannot hold images.') }}{%- endif %}
                {{- '<|vision_start|><|image_pad|><|vision_end|>' }}
            {%- elif part.type == 'video' or 'video' in part %}
                {%- if in_system %}{{- raise_exception('A system message cannot hold videos.') }}{%- endif %}
                {{- '<|vision_start|><|video_pad|><|vision_end|>' }}
            {%- elif 'text' in part %}
                {{- part.text }}
            {%- else %}
                {{- raise_exception('Unknown content part.') }}
            {%- endif %}
        {%- endfor %}
    {%- elif content is none or content is undefined %}
        {{- '' }}
    {%- else %}
        {{- raise_exception('Unknown content type.') }}
    {%- endif %}
{%- endmacro %}
{%- if not messages %}{{- raise_exception('No messages given.') }}{%- endif %}
{%- if messages[0].role == 'system' %}
    {{- '<|im_start|>system\\n' + render_content(messages[0].content, true)|trim + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- set content = render_content(message.content)|trim %}
    {%- if message.role == 'system' %}
        {%- if not loop.first %}{{- raise_exception('The system message must come first.') }}{%- endif %}
    {%- elif message.role == 'user' %}
        {{- '<|im_start|>user\\n' + content + '<|im_end|>\\n' }}
    {%- elif message.role == 'assistant' %}
        {%- if '</think>' in content %}
            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
        {%- endif %}
        {{- '<|im_start|>assistant\\n' + content + '<|im_end|>\\n' }}
    {%- else %}
        {{- raise_exception('Unknown message role.') }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- else %}
        {{- '<think>\\n' }}
    {%- endif %}
{%- endif %}
"""


def byte_symbols() -> list[str]:
    """The printable stand-in character of each byte 0..255 (the byte-level BPE convention):
    printable Latin-1 bytes stand for themselves, the others take code points from 256 upward."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    symbols, extra = [], 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def write_tiny_tokenizer(directory: str | Path, chat_template: str | None = CHAT_TEMPLATE) -> Path:
    """Write tokenizer.json, tokenizer_config.json and (unless None) chat_template.jinja into
    ``directory``; a UTF-8 byte's token id is its value, control tokens take ids 245..255."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    vocab = {symbol: i for i, symbol in enumerate(byte_symbols()[:FIRST_CONTROL_ID])}
    vocab.update({content: i for i, (content, _) in CONTROL_TOKENS.items()})
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(c, normalized=False) for c, special in CONTROL_TOKENS.values() if special])
    tokenizer.add_tokens([AddedToken(c, normalized=False) for c, special in CONTROL_TOKENS.values() if not special])
    directory = Path(directory)
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {"tokenizer_class": "Qwen3_5Tokenizer", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    if chat_template is not None:
        (directory / "chat_template.jinja").write_text(chat_template)
    return directory
