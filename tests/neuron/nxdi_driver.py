"""A CPU driver that calls a traced-model module the way NxDI's application and wrapper do.

From the pinned sources: CTE runs when ``position_ids.min() == 0``; the wrapper pads CTE inputs
to the bucket (input ids with the pad id, mask with 0, positions with 1) and the TKG mask to the
first token-generation bucket wider than it (than it plus K+1 for a verify call; the largest when
exactly as wide), casts int64 to int32, calls ``forward(input_ids, attention_mask, position_ids, seq_ids,
sampling_params, prev_hidden, adapter_ids)``, and the device keeps the aliased state outputs (here:
copied back into ``past_key_values``).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F

from qwen35_neuron.config.neuron_settings import NeuronSettings


class NxdiDriver:
    def __init__(self, module, context_buckets: tuple[int, ...], max_length: int, pad_token_id: int = 0,
                 token_buckets: tuple[int, ...] | None = None) -> None:
        self.module, self.buckets, self.max_length, self.pad = module, sorted(context_buckets), max_length, pad_token_id
        self.config = module.config  # what generate_direct reads the compiled limits from
        self.token_buckets = sorted(token_buckets or (max_length,))
        self.calls: list[str] = []
        self.tkg_buckets: list[int] = []  # the token-generation bucket of every TKG call

    def reset(self) -> None:
        pass  # NxDI's reset() only clears a host flag; device state is not zeroed

    def __call__(self, input_ids, attention_mask, position_ids, seq_ids):
        batch = input_ids.shape[0]
        if int(position_ids.min()) == 0:
            bucket = next(b for b in self.buckets if b >= input_ids.shape[1])
            grow = bucket - input_ids.shape[1]
            input_ids = F.pad(input_ids, (0, grow), value=self.pad)
            attention_mask = F.pad(attention_mask, (0, grow), value=0)
            position_ids = F.pad(position_ids, (0, grow), value=1)
            self.calls.append(f"cte{bucket}")
        else:
            width = attention_mask.shape[1]
            # a verify call (NxDI's speculation model) needs its K+1 slots beyond the mask
            spec_len = self.module.neuron_config.speculation_length
            required = width + (spec_len if input_ids.shape[1] == spec_len else 0)
            bucket = next((b for b in self.token_buckets if required < b), self.token_buckets[-1])
            assert required <= bucket, f"NxDI refuses a mask of {width} columns for this graph (largest bucket {bucket})"
            attention_mask = F.pad(attention_mask, (0, bucket - width), value=0)
            self.calls.append("tkg")
            self.tkg_buckets.append(bucket)
        args = [t.to(torch.int32) for t in (input_ids, attention_mask, position_ids, seq_ids)]
        sampling = torch.ones(batch, 3)
        with torch.no_grad():
            outputs = self.module(*args, sampling, torch.zeros(batch, dtype=torch.int32),
                                  torch.zeros(batch, dtype=torch.int32))
        first = 2 if self.module.neuron_config.output_logits else 1
        for param, new in zip(self.module.past_key_values, outputs[first:]):
            assert new.shape == param.shape and new.dtype == param.dtype, "state outputs must match the aliased inputs"
            param.data = new
        return types.SimpleNamespace(logits=outputs[0] if outputs[0].dim() == 3 else None,
                                     tokens=outputs[0] if outputs[0].dim() != 3 else None)


# settings of the tiny checkpoints: one rank, fp32, buckets that hold the test prompts
TINY = dict(tp_degree=1, lnc=1, batch_size=4, ctx_batch_size=None, context_buckets=(8, 16, 32), max_length=64,
            dtype="float32", deltanet_kernel="torch", attention_kernel="torch", gdr_chunk_size=8)


def build(neuron, model_dir, **changes):
    """Config, loaded traced-model module and alias map of a tiny checkpoint (SDK stand-ins installed)."""
    from neuronx_distributed_inference.models.model_wrapper import DecoderModelInstance
    from qwen35_neuron.neuron.model import NeuronQwen35MoeModel, Qwen35MoeForCausalLM

    config = neuron.inference_config(model_dir, NeuronSettings(**{**TINY, **changes}))
    instance = DecoderModelInstance(NeuronQwen35MoeModel, config)
    instance.load_module()
    module, aliases = instance.get(0)
    missing, unexpected = module.load_state_dict(Qwen35MoeForCausalLM.get_state_dict(model_dir, config), strict=False)
    assert unexpected == [] and all(name.startswith("past_key_values.") for name in missing)
    return config, module, aliases


def build_application(neuron, model_dir, **changes):
    """``Qwen35MoeForCausalLM`` 'loaded' on a CPU: our wrapper subclass inside NxDI's call path
    (fake_wrapper), with the traced module of :func:`build` as its CTE and TKG graphs."""
    import fake_wrapper
    from qwen35_neuron.neuron.model import Qwen35MoeForCausalLM

    config, module, _ = build(neuron, model_dir, **changes)
    app = fake_wrapper.load_on_cpu(Qwen35MoeForCausalLM(str(model_dir), config), module)
    return app, module
