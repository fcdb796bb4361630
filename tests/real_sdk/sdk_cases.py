"""What the real-SDK tier runs: the tiny checkpoints, prompts and settings (importable in both the main
environment, which writes the transformers reference, and the tier's venv, which runs NxDI)."""

from __future__ import annotations

# tiny configs (overrides of qwen35_neuron.testing.tiny.tiny_config_dict) checked against transformers at
# TP 1 and 2: the default one, one with head_dim 256 and DeltaNet key/value head dims that differ (Dk 16,
# Dv 32), and the dense qwen3_5 family with tied embeddings
CONFIGS: dict[str, dict] = {
    "default": {},
    "hd256_dk16_dv32": {"head_dim": 256, "rope_parameters": {"partial_rotary_factor": 0.25},
                        "linear_key_head_dim": 16, "linear_value_head_dim": 32},
    "dense_tied": {"dense": True, "tie_word_embeddings": True},
}
SEED = 1
REFERENCE_FILE = "reference.json"  # in the data directory, beside one checkpoint directory per config
NEW_TOKENS = 8
BUCKETS = (8, 16, 32)
MAX_LENGTH = 64
TOKEN_BUCKETS = (16, 32, MAX_LENGTH)  # token-generation graphs reading 16 / 32 / 64 cache slots
BATCH = 4  # compiled rows; every batch below is smaller, so NxDI pads it to 4

# a mixed-length batch, each prompt alone, and prompts that exactly fill a bucket (NxDI then takes the
# next one, except for the largest)
MIXED = [[11, 42, 7, 99, 3], [5, 200, 17, 64, 128, 31, 9, 77, 150, 2, 88, 13, 21], [240, 4, 66]]
FILLS = {8: [3, 14, 15, 92, 65, 35, 89, 79],
         32: [(7 * i + 3) % 240 + 1 for i in range(32)]}


# settings variants whose tokens are checked too: one request per context-encoding call (the product's
# default), NxD's MoE modules instead of ours, NxDI's sampler in the graph (on_cpu: its CPU argmax).
# Not output_logits: NxDI's CPU-mode wrapper takes the logits output for the first state when it splits or
# pads a batch (``logits, *kv_caches = outputs``), an NxDI limitation of CPU mode only.
VARIANTS: dict[str, dict] = {
    "ctx1": {"ctx_batch_size": 1},
    "token_buckets": {"token_buckets": TOKEN_BUCKETS},
    "nxd_moe": {"moe_backend": "nxd"},
    "on_device_sampling": {"on_device_sampling": True, "on_cpu": True},
}


# a long prompt: ~5x the largest of LONG_BUCKETS (6 chunks: 5 full, a tail; test_nxdi_long_prompts.py),
# and past the largest of BUCKETS too (2 chunks when it runs alone with the other prompts)
LONG_BUCKETS = (4, 8)
LONG = [(11 * i + 5) % 240 + 1 for i in range(42)]


def all_prompts() -> list[list[int]]:
    return MIXED + list(FILLS.values()) + [LONG]


def settings_kwargs(tp: int, **changes) -> dict:
    """NeuronSettings of the tier: fp32 (NxDI's CPU mode needs it at TP > 1), the PyTorch twins of the
    kernels (NKI cannot run here), the whole batch in one context-encoding call."""
    base = dict(tp_degree=tp, lnc=1, batch_size=BATCH, ctx_batch_size=None, context_buckets=BUCKETS,
                max_length=MAX_LENGTH, dtype="float32", deltanet_kernel="torch", attention_kernel="torch",
                moe_kernel="torch", gdr_chunk_size=8, save_sharded_checkpoint=False)
    base.update(changes)
    return base


def reference_key(prompt: list[int]) -> str:
    return ",".join(str(t) for t in prompt)
