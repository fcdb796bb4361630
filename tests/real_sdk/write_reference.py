"""Write the tier's inputs, in the MAIN environment (transformers 5): the tiny checkpoints (those of
``sdk_cases.CONFIGS`` and the main suite's ``tiny_models.TINY_CONFIGS``, one directory each) and the greedy
tokens of transformers' Qwen3.5 text classes on every prompt for ``sdk_cases.CONFIGS`` (and
those of ``sdk_speculation_cases``).

The tier's venv pins NxDI's transformers 4.57, which has no Qwen3.5 classes, so the reference is
computed here and read there. Usage: ``python tests/real_sdk/write_reference.py OUT_DIR``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: tiny_models

import sdk_speculation_cases  # noqa: E402
from sdk_cases import CONFIGS, NEW_TOKENS, REFERENCE_FILE, SEED, all_prompts, reference_key  # noqa: E402
from qwen35_neuron.testing.reference import hf_greedy, quiet_transformers  # noqa: E402
from qwen35_neuron.testing.tiny import build_tiny_checkpoint, load_hf_text_reference, tiny_config_dict  # noqa: E402
from tiny_models import TINY_CONFIGS  # noqa: E402


def write(out: Path) -> dict:
    quiet_transformers()
    torch.set_num_threads(2)
    reference = {"new_tokens": NEW_TOKENS, "tokens": {}}
    for name, overrides in {**TINY_CONFIGS, **CONFIGS}.items():
        directory = build_tiny_checkpoint(out / name, tiny_config_dict(**overrides), seed=SEED)
        if name in CONFIGS:
            model = load_hf_text_reference(directory)
            reference["tokens"][name] = {reference_key(p): hf_greedy(model, p, NEW_TOKENS)[0] for p in all_prompts()}
    (out / REFERENCE_FILE).write_text(json.dumps(reference, indent=1))
    sdk_speculation_cases.write_reference(out)  # the MTP checkpoints and their runs' tokens
    return reference


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python tests/real_sdk/write_reference.py OUT_DIR", file=sys.stderr)
        sys.exit(2)
    write(Path(sys.argv[1]))
