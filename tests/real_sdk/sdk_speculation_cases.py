"""What the real-SDK tier runs for MTP speculation (issue 18): checkpoints with an MTP head, the runs and
their transformers 5 greedy reference (written in the main environment by ``write_reference.py``)."""

from __future__ import annotations

import json
from pathlib import Path

from sdk_cases import FILLS, MAX_LENGTH, MIXED, NEW_TOKENS, SEED

REFERENCE_FILE = "speculation_reference.json"
MIX_SCALE = 0.2  # how much the drafting checkpoints' context overrides the head's rule (rows accept 0..K)
# checkpoint name -> (dense, built to draft well); the random head's drafts are (almost) all rejected
CHECKPOINTS: dict[str, tuple[bool, bool]] = {
    "mtp_drafting": (False, True),
    "mtp_dense_drafting": (True, True),
    "mtp_random": (False, False),
}
# run name -> (prompts, new tokens): a mixed-length batch; one short prompt whose verify calls climb
# through the token buckets 16, 32, 64; one prompt generating up to the last cache slot (32 + 32)
RUNS: dict[str, tuple[list[list[int]], int]] = {
    "mixed": (MIXED, NEW_TOKENS),
    "climb": ([MIXED[2]], 32),
    "cache_end": ([FILLS[32]], MAX_LENGTH - len(FILLS[32])),
}
TOKEN_BUCKETS = (16, 32, MAX_LENGTH)  # NxDI buckets its speculation (verify) graph by these
# what each rank job runs: (checkpoint, K) -> runs; the drafting MoE checkpoint also gets the state and
# alias-map probes
MATRIX: dict[tuple[str, int], tuple[str, ...]] = {
    ("mtp_drafting", 1): ("mixed", "climb", "cache_end"),
    ("mtp_drafting", 3): ("mixed", "climb", "cache_end"),
    ("mtp_dense_drafting", 1): ("mixed",),
    ("mtp_dense_drafting", 3): ("mixed", "cache_end"),
    ("mtp_random", 3): ("mixed", "cache_end"),  # one token per verify call: through the cache's last K slots
}
FULL_PROBES = "mtp_drafting"


def write_reference(out: Path) -> dict:
    """The checkpoints under ``out`` and transformers' greedy tokens of every run (main environment)."""
    from qwen35_neuron.testing.drafting import build_drafting_checkpoint
    from qwen35_neuron.testing.reference import hf_greedy
    from qwen35_neuron.testing.tiny import build_tiny_checkpoint, load_hf_text_reference, tiny_config_dict

    reference: dict = {}
    for name, (dense, drafting) in CHECKPOINTS.items():
        config = tiny_config_dict(dense=dense)
        if drafting:
            directory = build_drafting_checkpoint(out / name, config, seed=SEED, mix_scale=MIX_SCALE)
        else:
            directory = build_tiny_checkpoint(out / name, config, seed=SEED, mtp_layers=1)
        model = load_hf_text_reference(directory)
        needed = {run for (checkpoint, _), runs in MATRIX.items() if checkpoint == name for run in runs}
        reference[name] = {run: [hf_greedy(model, p, RUNS[run][1])[0] for p in RUNS[run][0]] for run in sorted(needed)}
    (out / REFERENCE_FILE).write_text(json.dumps(reference, indent=1))
    return reference
