"""The text checks each rank runs inside the real NxDI / NxD (``run_ranks(tp, "sdk_probes:text_job")``).

A job builds the application through NxDI's ``to_cpu()`` and runs a list of probes on it. Each probe
returns plain data (token lists, booleans, shapes) or, if it raised, its traceback - so one failing
property does not hide the others. The tests (``test_*.py``) assert on the results.
"""

from __future__ import annotations

import traceback
from typing import Callable

import torch

from sdk_cases import BUCKETS, FILLS, MIXED, NEW_TOKENS, all_prompts, reference_key, settings_kwargs
from sdk_harness import CallLog, build_application, graphs


def _settings(tp: int, **changes):
    from qwen35_neuron.config.neuron_settings import NeuronSettings

    return NeuronSettings(**settings_kwargs(tp, **changes))


# ---------------------------------------------------------------------------------------------
# probes
# ---------------------------------------------------------------------------------------------


def loaded_weights(app) -> dict:
    """to_cpu loads with strict=False: the converted checkpoint must name exactly the model's weights."""
    checkpoint = set(app.checkpoint_loader_fn())
    out = {}
    for tag, graph in zip(("cte", "tkg"), graphs(app)):
        weights = {n for n in graph.state_dict() if not n.startswith("past_key_values.")}
        out[tag] = {"missing": sorted(weights - checkpoint), "unexpected": sorted(checkpoint - weights),
                    "count": len(weights)}
    return out


def tokens_alone(app) -> dict:
    from qwen35_neuron.neuron.generation import generate_direct, generate_with_adapter

    return {"adapter": {reference_key(p): generate_with_adapter(app, [p], NEW_TOKENS)[0] for p in all_prompts()},
            "direct": {reference_key(p): generate_direct(app, [p], NEW_TOKENS).tokens[0] for p in all_prompts()}}


def tokens_mixed(app) -> dict:
    from qwen35_neuron.neuron.generation import generate_direct, generate_with_adapter

    log = CallLog(app)
    direct = generate_direct(app, MIXED, NEW_TOKENS).tokens
    calls = log.close().shapes()
    return {"prompts": [reference_key(p) for p in MIXED], "direct": direct,
            "adapter": generate_with_adapter(app, MIXED, NEW_TOKENS), "direct_calls": calls}


def first_logits(app) -> torch.Tensor:
    """The context-encoding logits of the mixed batch (last position of every row)."""
    from qwen35_neuron.neuron.generation import right_padded

    ids, mask, positions = right_padded(MIXED)
    app.reset()
    out = app(input_ids=ids, attention_mask=mask, position_ids=positions,
              seq_ids=torch.arange(len(MIXED), dtype=torch.int32))
    return out.logits[:, -1, :].clone()


def idle_rows(app) -> dict:
    """Fill every row, then run one prompt through NxDI's partial-batch padding (direct loop and HF
    adapter): the other rows' state must stay bit for bit."""
    from qwen35_neuron.neuron.generation import generate_direct, generate_with_adapter

    batch = app.neuron_config.batch_size
    generate_direct(app, [list(FILLS[8])[i:] + [9] * i for i in range(batch)], 3)
    cte, tkg = graphs(app)
    before = [p.detach().clone() for p in tkg.past_key_values]
    padded = {"cte": 0, "tkg": 0}
    for tag, wrapper in (("cte", app.context_encoding_model), ("tkg", app.token_generation_model)):
        original = wrapper._forward_with_pad

        def counting(*args, _tag=tag, _original=original):
            padded[_tag] += 1
            return _original(*args)
        wrapper._forward_with_pad = counting
    try:
        direct = generate_direct(app, [MIXED[0]], NEW_TOKENS).tokens[0]
        after_direct = [p.detach().clone() for p in tkg.past_key_values]
        adapter = generate_with_adapter(app, [MIXED[2]], NEW_TOKENS)[0]
    finally:
        for wrapper in (app.context_encoding_model, app.token_generation_model):
            del wrapper._forward_with_pad
    after_adapter = list(tkg.past_key_values)
    kinds = [buf.kind for buf in tkg.state_layout]
    return {
        "direct": direct, "adapter": adapter, "padded_calls": padded,
        "others_unchanged": [[torch.equal(b[1:], a[1:]) for b, a in zip(before, after)]
                             for after in (after_direct, after_adapter)],
        "row0_changed": [not torch.equal(b[0], a[0]) for b, a in zip(before, after_direct)],
        "cte_equals_tkg": all(torch.equal(c, t) for c, t in zip(cte.past_key_values, tkg.past_key_values)),
        "kinds": kinds,
    }


def buckets(app) -> dict:
    """NxDI's own bucket choice (``ModelWrapper._get_seq_bucket``) beside ours, and what the prompts that
    exactly fill a bucket ran at."""
    from qwen35_neuron.decoding.buckets import choose_bucket
    from qwen35_neuron.neuron.generation import generate_direct

    wrapper = app.context_encoding_model
    lengths = range(1, max(BUCKETS) + 1)
    nxdi = [wrapper._get_seq_bucket(wrapper.neuron_config.buckets, n, 0, "first_fit") for n in lengths]
    ours = [choose_bucket(n, BUCKETS) for n in lengths]
    ran = {}
    for length, prompt in FILLS.items():
        log = CallLog(app)
        tokens = generate_direct(app, [prompt], NEW_TOKENS).tokens[0]
        ran[length] = {"tokens": tokens, "cte_lengths": [n for tag, _, n in log.close().shapes() if tag == "cte"]}
    return {"nxdi": nxdi, "ours": ours, "wrapper_buckets": list(wrapper.neuron_config.buckets), "fills": ran}


def state_carry(app) -> dict:
    """One context encoding through the application: the states the CTE graph returned must be what
    both graphs hold afterwards (NxDI's copy-back), and the next step must read them."""
    from qwen35_neuron.neuron.generation import decode_mask, right_padded

    cte, tkg = graphs(app)
    for param in list(cte.past_key_values) + list(tkg.past_key_values):
        param.data.zero_()
    returned = []
    handle = cte.register_forward_hook(lambda module, args, out: returned.append([t.clone() for t in out[1:]]))
    ids, mask, positions = right_padded(MIXED)
    app.reset()
    seq_ids = torch.arange(len(MIXED), dtype=torch.int32)
    first = app(input_ids=ids, attention_mask=mask, position_ids=positions, seq_ids=seq_ids).logits
    handle.remove()
    states = returned[0]
    held = {tag: all(torch.equal(s, p) for s, p in zip(states, graph.past_key_values))
            for tag, graph in (("cte", cte), ("tkg", tkg))}
    recurrent = [i for i, buf in enumerate(tkg.state_layout) if buf.kind == "recurrent_state"]
    rows_written = [bool(tkg.past_key_values[i][: len(MIXED)].abs().sum(dim=(1, 2, 3)).gt(0).all()) for i in recurrent]
    lengths = [len(p) for p in MIXED]
    step_ids = first[:, -1].argmax(dim=-1).to(torch.int32)[:, None]
    log = CallLog(app)
    app(input_ids=step_ids, attention_mask=decode_mask(lengths, [True] * len(MIXED)),
        position_ids=torch.tensor([[n] for n in lengths], dtype=torch.int32), seq_ids=seq_ids)
    return {"held": held, "rows_written": rows_written, "step_calls": log.close().shapes(),
            "tkg_changed": not all(torch.equal(s, p) for s, p in zip(states, tkg.past_key_values))}


def tkg_mask_widths(app) -> dict:
    """The attention-mask width (= token-generation bucket) of every TKG call of the mixed batch, as NxDI's
    wrapper picks and pads it, and the tokens."""
    from qwen35_neuron.neuron.generation import generate_direct

    widths = []
    handle = graphs(app)[1].register_forward_pre_hook(lambda module, args: widths.append(int(args[1].shape[1])))
    try:
        tokens = generate_direct(app, MIXED, NEW_TOKENS).tokens
    finally:
        handle.remove()
    return {"widths": widths, "tokens": tokens}


def full_batch_any_order(app) -> dict:
    """A context encoding covering every row with the prompts in rows [2, 0, 3, 1] (NxDI runs a full batch
    as given), then greedy decode steps over all rows: each prompt's tokens, in the caller's order."""
    from qwen35_neuron.neuron.generation import decode_mask, right_padded

    prompts = MIXED + [FILLS[8]]
    rows = [2, 0, 3, 1]
    ids, mask, positions = right_padded(prompts)
    app.reset()
    out = app(input_ids=ids, attention_mask=mask, position_ids=positions, seq_ids=torch.tensor(rows, dtype=torch.int32))
    first = out.logits[:, -1, :].argmax(dim=-1).tolist()
    tokens = [[0] for _ in rows]  # per row
    lengths = [0] * len(rows)
    for i, row in enumerate(rows):
        tokens[row], lengths[row] = [first[i]], len(prompts[i])
    for _ in range(NEW_TOKENS - 1):
        step = app(input_ids=torch.tensor([[t[-1]] for t in tokens], dtype=torch.int32),
                   attention_mask=decode_mask(lengths, [True] * len(rows)),
                   position_ids=torch.tensor([[n] for n in lengths], dtype=torch.int32),
                   seq_ids=torch.arange(len(rows), dtype=torch.int32))
        for row, token in enumerate(step.logits[:, -1, :].argmax(dim=-1).tolist()):
            tokens[row].append(token)
        lengths = [n + 1 for n in lengths]
    return {reference_key(p): tokens[row] for p, row in zip(prompts, rows)}


def instances(app) -> dict:
    """Per-bucket model instances as NxDI builds them for tracing, and their alias maps."""
    out = {}
    for tag, wrapper in (("cte", app.context_encoding_model), ("tkg", app.token_generation_model)):
        instance = wrapper.get_model_instance()
        instance.load_module()
        per_bucket = []
        for rank in range(len(wrapper.neuron_config.buckets)):
            module, aliases = instance.get(rank)
            buffers = list(module.past_key_values)
            per_bucket.append({
                "n_positions": module.n_positions,
                "outputs": [aliases[p] for p in buffers if p in aliases],
                "keys_are_buffers": len(aliases) == len(buffers) and all(any(k is p for p in buffers) for k in aliases),
                "kinds": [buf.kind for buf in module.state_layout],
                "shapes": [tuple(p.shape) for p in buffers],
                "dtypes": [str(p.dtype) for p in buffers],
            })
        out[tag] = per_bucket
    return out


TEXT_PROBES: dict[str, Callable] = {
    "loaded_weights": loaded_weights, "tokens_alone": tokens_alone, "tokens_mixed": tokens_mixed,
    "first_logits": first_logits, "idle_rows": idle_rows, "buckets": buckets, "state_carry": state_carry,
    "instances": instances, "full_batch_any_order": full_batch_any_order,
}
# extra probes of one settings variant
VARIANT_PROBES: dict[str, dict[str, Callable]] = {"token_buckets": {"tkg_mask_widths": tkg_mask_widths}}


def _run(probes: dict[str, Callable], app) -> dict:
    results = {}
    for name, probe in probes.items():
        try:
            results[name] = {"value": probe(app)}
        except Exception:  # noqa: BLE001 - the test of this probe fails with it
            results[name] = {"error": traceback.format_exc()}
    return results


def text_job(model_dir: str, tp: int, variants: dict[str, dict] | None = None) -> dict:
    """The text probes on the tier's settings, plus the token probes on each settings variant."""
    results = {"main": _run(TEXT_PROBES, build_application(model_dir, _settings(tp)))}
    for name, changes in (variants or {}).items():
        app = build_application(model_dir, _settings(tp, **changes))
        results[name] = _run({"tokens_mixed": tokens_mixed, "loaded_weights": loaded_weights,
                              **VARIANT_PROBES.get(name, {})}, app)
    return results

