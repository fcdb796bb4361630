"""MTP speculation inside the real NxDI / NxD, in NxDI's CPU mode (rank side; ``run_ranks(tp,
"sdk_speculation:speculation_job", ...)``; SDK imports here).

What is NxDI's own code: ``NeuronBaseForCausalLM`` builds the wrappers from ``speculation_length`` (a
context-encoding model and its "speculation_model", no token-generation model), bucketing (the
speculation graph by the token-generation buckets), ``to_cpu()`` (conversion, NxD sharding, one eager
model per wrapper), the application's ``forward`` (routing by width and position, CPU copy-back, output
construction) and each ``ModelWrapper``'s int32 casts, bucket choice and padding, partial-batch padding.
What is ours: the graphs, the application's overrides, and the host loop
(``generate_speculative_direct``): NxDI has no MTP loop (its HF adapter's assisted decoding needs a
separate draft model). One deviation: ``to_cpu()`` refuses any ``speculation_length`` before doing
anything else; :func:`build_speculative_application` lifts that one check for the call.
"""

from __future__ import annotations

import os
import traceback
from typing import Callable

import torch

from sdk_cases import BATCH, settings_kwargs
from sdk_harness import build_application
from sdk_speculation_cases import FULL_PROBES, MATRIX, RUNS, TOKEN_BUCKETS


def _settings(tp: int, **changes):
    from qwen35_neuron.config.neuron_settings import NeuronSettings

    return NeuronSettings(**settings_kwargs(tp, token_buckets=TOKEN_BUCKETS, **changes))


def build_speculative_application(model_dir: str, num_drafts: int, tp: int, **changes):
    """``Qwen35MoeForCausalLM`` compiled for K drafts (on the tier's settings with ``changes``), through NxDI's
    ``to_cpu()`` with its refusal of speculation (the first check, nothing else depends on it) lifted for
    the call."""
    import qwen35_neuron.neuron as neuron
    from qwen35_neuron.neuron.model import Qwen35MoeForCausalLM

    settings = _settings(tp, num_speculative_tokens=num_drafts, **changes)
    app = Qwen35MoeForCausalLM(model_dir, neuron.inference_config(model_dir, settings))
    neuron_config = app.neuron_config
    length, neuron_config.speculation_length = neuron_config.speculation_length, 0
    try:
        app.to_cpu()
    finally:
        neuron_config.speculation_length = length
    os.environ.pop("WORLD_SIZE", None)  # to_cpu started the gloo group (see sdk_harness.build_application)
    return app


class VerifyLog:
    """Every call of the speculation wrapper: the mask width the host sent, then what reached the graph
    (rows, slots, the padded mask width = NxDI's bucket, each row's cache position, commit and whether its
    mask had a one);
    and the number of context-encoding graph calls."""

    def __init__(self, app, num_drafts: int) -> None:
        self.num_drafts, self.sent, self.calls, self.cte = num_drafts, [], [], 0
        wrapper = app.speculation_model
        self.handles = [wrapper.register_forward_pre_hook(lambda m, args: self.sent.append(int(args[1].shape[1]))),
                        wrapper.model.register_forward_hook(self._graph),
                        app.context_encoding_model.model.register_forward_pre_hook(self._cte)]

    def _cte(self, module, args) -> None:
        self.cte += 1

    def _graph(self, module, args, out) -> None:
        ids, mask, positions = args[:3]
        self.calls.append({"rows": int(ids.shape[0]), "slots": int(ids.shape[1]), "bucket": int(mask.shape[1]),
                           "start": positions[:, 0].tolist(),
                           "commit": out[0][:, self.num_drafts + 1].tolist(),
                           "active": (mask.sum(dim=1) > 0).tolist()})

    def close(self) -> dict:
        for handle in self.handles:
            handle.remove()
        return {"sent": self.sent, "calls": self.calls, "cte_calls": self.cte}


def runs(app, num_drafts: int, names: tuple[str, ...]) -> dict:
    """Each run through ``generate_speculative_direct``: tokens, acceptance and the verify calls."""
    from qwen35_neuron.neuron.speculation import generate_speculative_direct

    out = {}
    for name in names:
        prompts, new_tokens = RUNS[name]
        log = VerifyLog(app, num_drafts)
        try:
            result = generate_speculative_direct(app, prompts, new_tokens, num_drafts)
        finally:
            calls = log.close()
        out[name] = {"tokens": result.tokens, "acceptance": result.acceptance.as_dict(), **calls}
    return out


def verify_states(app, plain, num_drafts: int) -> dict:
    """The mixed run again, keeping every verify call's inputs and returned state buffers; then the plain
    application (no speculation: NxDI's token-generation graph) decodes exactly the tokens each verify
    step committed, one per call, and its state buffers are compared with the verify step's: DeltaNet conv
    and recurrent state whole, attention K/V over each row's committed slots (rejected drafts' K/V lie
    past them, unread)."""
    from qwen35_neuron.neuron.generation import context_encode, decode_mask
    from qwen35_neuron.neuron.speculation import generate_speculative_direct

    prompts, new_tokens = RUNS["mixed"]
    graph = app.speculation_model.model
    records = []
    handle = graph.register_forward_hook(
        lambda m, args, out: records.append(([a.clone() for a in args[:4]], out[0].clone(), [t.clone() for t in out[1:]])))
    try:
        tokens = generate_speculative_direct(app, prompts, new_tokens, num_drafts).tokens
    finally:
        handle.remove()
    rows = len(prompts)
    context_encode(plain, prompts, new_tokens)
    plain_buffers = plain.token_generation_model.model.past_key_values
    layout = graph.state_layout
    steps = []
    for (ids, mask, positions, seq_ids), packed, states in records:
        commit = packed[:rows, num_drafts + 1].tolist()
        start = positions[:rows, 0].tolist()
        for j in range(max(commit)):
            active = [j < c for c in commit]
            lengths = [s + j for s in start]
            plain(input_ids=(ids[:rows, j:j + 1] * torch.tensor(active, dtype=ids.dtype)[:, None]),
                  attention_mask=decode_mask(lengths, active), position_ids=torch.tensor(lengths, dtype=torch.int32)[:, None],
                  seq_ids=torch.arange(rows, dtype=torch.int32))
        ends = [s + c for s, c in zip(start, commit)]
        compared = []
        for buf, ours, theirs in zip(layout, states, plain_buffers):
            if buf.name.startswith("mtp."):
                continue  # the MTP head's K/V: plain decoding has none
            if buf.kind in ("k_cache", "v_cache"):
                pairs = [(ours[r, :, :end], theirs[r, :, :end]) for r, end in enumerate(ends)]
            else:
                pairs = [(ours[:rows], theirs[:rows])]
            compared.append({"kind": buf.kind, "max_diff": max(float((a - b).abs().max()) for a, b in pairs),
                             "close": all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in pairs)})
        steps.append({"commit": commit, "seq_ids": seq_ids.tolist(), "compared": compared,
                      "unused_rows_zero": all(not bool(t[rows:].any()) for t in states)})
    return {"tokens": tokens, "steps": steps}


def instances(app) -> dict:
    """Per-bucket model instances of both wrappers, as NxDI prepares them for tracing: the alias map, and
    the instance run on NxDI's own example inputs for that bucket (``input_generator``, what ModelBuilder
    traces): output 0 and each state output against the buffer it is aliased to."""
    out = {"tags": [wrapper.tag for wrapper in app.models], "has_token_generation_model": hasattr(app, "token_generation_model")}
    for wrapper in app.models:
        instance = wrapper.get_model_instance()
        instance.load_module()
        per_bucket = []
        for rank, example in enumerate(wrapper.input_generator()):
            module, aliases = instance.get(rank)
            buffers = list(module.past_key_values)
            with torch.no_grad():
                outputs = module(*example)
            per_bucket.append({
                "bucket": wrapper.neuron_config.buckets[rank],
                "example_shapes": [tuple(t.shape) for t in example[:3]],
                "aliases_to": [aliases[p] for p in buffers if p in aliases],
                "keys_are_buffers": len(aliases) == len(buffers) and all(any(k is p for p in buffers) for k in aliases),
                "names": [buf.name for buf in module.state_layout],
                "output0": (tuple(outputs[0].shape), str(outputs[0].dtype)),
                "states_match": len(outputs) == 1 + len(buffers) and all(
                    o.shape == p.shape and o.dtype == p.dtype for o, p in zip(outputs[1:], buffers)),
            })
        out[wrapper.tag] = per_bucket
    return out


def reads_its_bucket(app, num_drafts: int) -> dict:
    """A verify call at bucket 16 after a short prompt, twice: as is, and with every main-model V cache slot
    from 16 on set to NaN. A graph reading past its bucket would carry the NaN (a masked weight times NaN is
    NaN) into its tokens and states."""
    from qwen35_neuron.neuron.generation import context_encode
    from qwen35_neuron.neuron.speculation import _packed, verify_inputs

    prompt, bucket = RUNS["climb"][0][0], TOKEN_BUCKETS[0]
    graph = app.speculation_model.model
    packed = _packed(context_encode(app, [prompt], 4)[0])
    saved = [p.detach().clone() for p in graph.past_key_values]
    ids, mask, positions = verify_inputs([len(prompt)], packed[:, 0].tolist(), packed[:, 1:], [True],
                                         app.config.settings().max_length)
    main_kv = [buf.kind in ("k_cache", "v_cache") and not buf.name.startswith("mtp.") for buf in graph.state_layout]
    log = VerifyLog(app, num_drafts)
    results = {}
    for poison in (False, True):
        for param, old, is_kv in zip(graph.past_key_values, saved, main_kv):
            param.data = old.clone()
            if poison and is_kv:
                param.data[:, :, bucket:] = float("nan")
        out = _packed(app(input_ids=ids, attention_mask=mask, position_ids=positions,
                          seq_ids=torch.tensor([0], dtype=torch.int32)))
        results["poisoned" if poison else "clean"] = {
            "packed": out.tolist(),
            "finite": all(bool(torch.isfinite(p[0, :, :bucket] if is_kv else p[0]).all())
                          for p, is_kv in zip(graph.past_key_values, main_kv))}
    return {"buckets": [c["bucket"] for c in log.close()["calls"]], **results}


def _run(probes: dict[str, Callable]) -> dict:
    results = {}
    for name, probe in probes.items():
        try:
            results[name] = {"value": probe()}
        except Exception:  # noqa: BLE001 - the test of this probe fails with it
            results[name] = {"error": traceback.format_exc()}
    return results


def speculation_job(data_dir: str, tp: int) -> dict:
    """Every (checkpoint, K) of ``MATRIX``; the state, alias-map and bucket probes on the drafting MoE
    checkpoint, whose plain application (no speculation) decodes the committed tokens."""
    results = {}
    plain = build_application(os.path.join(data_dir, FULL_PROBES), _settings(tp))
    for (name, k), run_names in MATRIX.items():
        app = build_speculative_application(os.path.join(data_dir, name), k, tp)
        probes = {"runs": lambda: runs(app, k, run_names)}
        if name == FULL_PROBES:
            probes.update(states=lambda: verify_states(app, plain, k), instances=lambda: instances(app),
                          reads_its_bucket=lambda: reads_its_bucket(app, k))
        results[f"{name}-k{k}"] = _run(probes)
    return results


assert BATCH > len(RUNS["mixed"][0]), "the mixed run leaves a row for NxDI's partial-batch padding"
