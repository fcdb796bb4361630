"""A tiny byte-level BPE tokenizer for tiny checkpoints, so ``--prompt`` is testable offline.

Qwen3.5's tokenizer is a byte-level BPE; ours has the same kind of ``tokenizer.json`` with the 256
byte symbols as its whole vocabulary (id = byte value) and no merges, so it fits a 256-token tiny
model and loads through ``AutoTokenizer`` like the real one.
"""

from __future__ import annotations

import json
from pathlib import Path


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


def write_tiny_tokenizer(directory: str | Path) -> Path:
    """Write tokenizer.json + tokenizer_config.json into ``directory``; token id = UTF-8 byte value."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    tokenizer = Tokenizer(BPE(vocab={s: i for i, s in enumerate(byte_symbols())}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    directory = Path(directory)
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Qwen3_5Tokenizer"}))
    return directory
