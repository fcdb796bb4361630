"""Long prompts inside the real NxDI (``run_ranks(tp, "sdk_long_probes:long_job")``; SDK imports here): a context
encoding wider than the largest bucket, which NxDI alone refuses, runs through our application's
chunked prefill - NxDI's own routing, bucket padding and CPU-mode copy-back for every chunk."""

from __future__ import annotations

import torch

from sdk_cases import LONG, LONG_BUCKETS, MIXED, NEW_TOKENS
from sdk_harness import CallLog, build_application
from sdk_probes import _run, _settings

SHORT = MIXED[2]
ONE_CALL_BUCKET = 48  # holds LONG in one context encoding: the unchunked run the chunked one must equal


def long_prompts(app) -> dict:
    """LONG beside SHORT through our direct loop, LONG alone through NxDI's HF adapter, and the
    context-encoding calls that reached the graph."""
    from qwen35_neuron.neuron.generation import generate_direct, generate_with_adapter

    log = CallLog(app)
    direct = generate_direct(app, [LONG, SHORT], NEW_TOKENS).tokens
    calls = [(rows, length) for tag, rows, length in log.close().shapes() if tag == "cte"]
    return {"direct": direct, "adapter": generate_with_adapter(app, [LONG], NEW_TOKENS)[0], "cte_calls": calls}


def last_logits(app) -> torch.Tensor:
    """LONG's context-encoding logits at its last token (one row)."""
    from qwen35_neuron.neuron.generation import right_padded

    ids, mask, positions = right_padded([LONG])
    app.reset()
    out = app(input_ids=ids, attention_mask=mask, position_ids=positions, seq_ids=torch.tensor([0], dtype=torch.int32))
    return out.logits[:, -1, :].clone()


def long_job(model_dir: str, tp: int) -> dict:
    """The long-prompt probes with buckets LONG_BUCKETS (whole batch per context encoding, and one request
    per call), and LONG's logits from one call of a bucket that holds it."""
    results = {}
    for name, changes in {"batch": {}, "ctx1": {"ctx_batch_size": 1}}.items():
        app = build_application(model_dir, _settings(tp, context_buckets=LONG_BUCKETS, **changes))
        results[name] = _run({"long_prompts": long_prompts, "last_logits": last_logits}, app)
    one_call = build_application(model_dir, _settings(tp, context_buckets=(ONE_CALL_BUCKET,)))
    results["one_call"] = _run({"last_logits": last_logits}, one_call)
    return results
