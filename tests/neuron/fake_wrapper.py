"""Stand-ins for NxDI's call path from ``NeuronBaseForCausalLM.forward`` down to the compiled graphs.

Written from what the pinned sources (NxDI ef2731ef8c57: models/model_base.py, models/model_wrapper.py;
NxD fbac349b61a3: trace/spmd.py) do, so our wrapper overrides run inside the same flow on a CPU:

- the application picks CTE when ``self._is_prefill(position_ids)`` (``position_ids.min() == 0``) and calls the graph's wrapper with the
  seven standard inputs followed by ``*llava_args``;
- the wrapper fills ``prev_hidden`` / ``adapter_ids`` when None, drops non-tensors, casts int64 to
  int32, pads to the first bucket that fits (CTE: ids with the pad id, mask 0, positions 1; TKG: the
  mask), then runs a full batch directly, larger batches in chunks (re-bucketed), and a partial batch
  through ``_forward_with_pad``, which sorts the rows by seq id after adding the missing ones (row 0
  repeated) and passes on only the first EIGHT inputs;
- the loaded graphs route a call by the exact shapes of all its inputs (NxD's router raises for a
  list it was not traced with) and keep the aliased state on the device.
"""

from __future__ import annotations

import copy
import types

import torch
import torch.nn.functional as F
from torch import nn

CONTEXT_ENCODING_MODEL_TAG = "context_encoding_model"
TOKEN_GENERATION_MODEL_TAG = "token_generation_model"
VISION_ENCODER_MODEL_TAG = "vision_encoder_model"
SAMPLING_PARAMS = 3  # top_k, top_p, temperature


def _first_fit(buckets, length):
    fitting = [b for b in sorted(buckets) if b >= length]
    if not fitting:
        raise ValueError(f"no bucket of {sorted(buckets)} holds {length}")
    return fitting[0]


def _repeat_first(tensor, rows):
    return torch.cat([tensor, tensor[:1].expand(rows - tensor.shape[0], *tensor.shape[1:])])


def _take(outputs, index):
    return [o.index_select(0, index) for o in outputs] if isinstance(outputs, list) else outputs.index_select(0, index)


def _join(chunks):
    if isinstance(chunks[0], list):
        return [torch.cat(parts) for parts in zip(*chunks)]
    return torch.cat(chunks)


class ModelWrapper(nn.Module):
    def __init__(self, config, model_cls, tag="", compiler_args=None, priority_model_idx=None,
                 pipeline_execution=False, return_ranked_to_cpu=False, model_init_kwargs={}):
        super().__init__()
        self.config, self.neuron_config, self.model_cls = config, config.neuron_config, model_cls
        self.tag, self.model_init_kwargs = tag, model_init_kwargs
        if getattr(config, "pad_token_id", None) is None:
            config.pad_token_id = 0
        self.model = None
        self.async_mode = False

    def _is_cte(self):
        return self.tag == CONTEXT_ENCODING_MODEL_TAG

    def input_generator(self):
        nc, examples = self.neuron_config, []
        for bucket in nc.buckets:
            batch, active = nc.batch_size, (bucket if self._is_cte() else 1)
            positions = (torch.arange(active, dtype=torch.int32)[None].repeat(batch, 1) if self._is_cte()
                         else torch.ones(batch, 1, dtype=torch.int32))
            examples.append((torch.ones(batch, active, dtype=torch.int32), torch.ones(batch, bucket, dtype=torch.int32),
                             positions, torch.arange(batch, dtype=torch.int32),
                             torch.ones(batch, SAMPLING_PARAMS), torch.zeros(batch, dtype=torch.int32),
                             torch.zeros(batch, dtype=torch.int32)))
        return examples

    def _process_args(self, *args):
        rows = args[3].shape[0]
        filled = [torch.zeros(rows, dtype=torch.int32) if i in (5, 6) and a is None else a for i, a in enumerate(args)]
        return tuple(filled)

    def convert_int64_to_int32(self, *args):
        return [a.to(torch.int32) if a.dtype == torch.int64 else a for a in args]

    def pad_inputs(self, *args, pad_type="first_fit"):
        if self._is_cte():
            length = _first_fit(self.neuron_config.buckets, args[0].shape[1])
            padded = [F.pad(a, (0, length - a.shape[1]), value=v)
                      for a, v in zip(args[:3], (self.config.pad_token_id, 0, 1))]
            return (*padded, *args[3:])
        length = _first_fit(self.neuron_config.buckets, args[1].shape[1])
        return (args[0], F.pad(args[1], (0, length - args[1].shape[1]), value=0), *args[2:])

    def vllm_cte_repadding(self, batch_args):
        keep = int(batch_args[2].max()) + 1
        batch_args = [a[:, :keep] if i < 3 else a for i, a in enumerate(batch_args)]
        return self.pad_inputs(*batch_args, pad_type="first_fit")

    def forward(self, *args, pad_type="first_fit"):
        args = self._process_args(*args)
        args = [a for a in args if isinstance(a, torch.Tensor)]
        args = self.pad_inputs(*self.convert_int64_to_int32(*args), pad_type=pad_type)
        rows, compiled = args[3].shape[0], self.neuron_config.batch_size
        if rows == compiled:
            return self._forward(*args)
        chunks = []
        for start in range(0, rows, compiled):
            part = [a[start:start + compiled] for a in args]
            if part[3].shape[0] == compiled:
                chunks.append(self._forward(*self.vllm_cte_repadding(part)))
            else:
                chunks.append(self._forward_with_pad(*part))
        return _join(chunks)

    def _forward_with_pad(self, *args):
        nc, seq_ids = self.neuron_config, args[3]
        given = seq_ids.tolist()
        filled = torch.tensor(given + [s for s in range(nc.max_batch_size) if s not in given], dtype=seq_ids.dtype)
        sorted_ids, order = torch.sort(filled)
        padded = [_repeat_first(a, nc.batch_size).index_select(0, order) for a in args[:3]]
        padded += [sorted_ids[:nc.max_batch_size], _repeat_first(args[4], nc.batch_size).index_select(0, order)]
        for extra in args[5:8]:  # NxDI pads these three (medusa's slots) with zeros; later inputs are dropped
            grown = torch.cat([extra, extra.new_zeros(nc.batch_size - extra.shape[0], *extra.shape[1:])])
            padded.append(grown.index_select(0, order))
        return _take(self._forward(*padded), seq_ids.to(torch.long))

    def _forward(self, *args):
        return self.model(*args)


class CompiledGraphs:
    """What ``wrapper.model`` is after load: the graphs of every bucket, sharing the device state."""

    def __init__(self, module, wrapper):
        self.module, self.wrapper = module, wrapper
        self.routes = {self._key(example) for example in wrapper.input_generator()}
        self.calls = 0

    @staticmethod
    def _key(inputs):
        return str([(list(t.shape), t.dtype) for t in inputs])

    def __call__(self, *args):
        if self._key(args) not in self.routes:
            raise ValueError(f"Input shape {self._key(args)} not found in input_shape_map: {sorted(self.routes)}")
        self.calls += 1
        with torch.no_grad():
            outputs = self.module(*args)
        first = 2 if self.module.neuron_config.output_logits else 1
        for param, new in zip(self.module.past_key_values, outputs[first:]):
            assert new.shape == param.shape and new.dtype == param.dtype, "state outputs must match the aliased inputs"
            param.data = new
        return outputs[0] if first == 1 else list(outputs[:first])


class NeuronBaseForCausalLM(nn.Module):
    _model_cls = None

    def __init__(self, model_path=None, config=None, neuron_config=None):
        super().__init__()
        self.model_path, self.config = model_path, config
        self.neuron_config = config.neuron_config if config is not None else neuron_config
        self.kv_cache_populated = False

    def get_model_wrapper_cls(self):
        return ModelWrapper

    def _wrapper(self, tag, batch_size, buckets):
        config = copy.deepcopy(self.config)
        config.neuron_config.batch_size, config.neuron_config.buckets = batch_size, list(buckets)
        return self.get_model_wrapper_cls()(config=config, model_cls=self._model_cls, tag=tag)

    def enable_context_encoding(self, **model_init_kwargs):
        nc = self.neuron_config
        self.context_encoding_model = self._wrapper(CONTEXT_ENCODING_MODEL_TAG, nc.ctx_batch_size,
                                                    nc.context_encoding_buckets)

    def enable_token_generation(self, enable_wlt_optimization=True, **model_init_kwargs):
        nc = self.neuron_config
        self.token_generation_model = self._wrapper(TOKEN_GENERATION_MODEL_TAG, nc.tkg_batch_size,
                                                    nc.token_generation_buckets)

    def reset(self):
        self.kv_cache_populated = False

    def forward(self, input_ids=None, seq_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, sampling_params=None, prev_hidden=None, labels=None, use_cache=None,
                output_attentions=None, output_hidden_states=None, adapter_ids=None, medusa_args=None,
                return_dict=None, llava_args=[], input_capture_hook=None, tensor_capture_hook=None,
                slot_mapping=None, block_table=None, full_context_lens=None, computed_context_lens=None,
                tf_args=None):
        if seq_ids is None:
            seq_ids = torch.arange(input_ids.shape[0])
        if sampling_params is None:
            sampling_params = torch.ones(input_ids.shape[0], SAMPLING_PARAMS)
        outputs, _ = self._get_model_outputs(input_ids, attention_mask, position_ids, seq_ids, sampling_params,
                                             prev_hidden, adapter_ids, medusa_args, llava_args, tf_args=tf_args)
        if self.neuron_config.on_device_sampling_config is None:
            return types.SimpleNamespace(logits=outputs, tokens=None)
        if isinstance(outputs, list):
            return types.SimpleNamespace(tokens=outputs[0], logits=outputs[1])
        return types.SimpleNamespace(tokens=outputs, logits=None)

    def _is_prefill(self, position_ids):
        return position_ids.min().item() == 0

    def _get_model_outputs(self, input_ids, attention_mask, position_ids, seq_ids, sampling_params, prev_hidden,
                           adapter_ids, medusa_args, llava_args, slot_mapping=None, block_table=None,
                           full_context_lens=None, computed_context_lens=None, tf_args=None):
        if self._is_prefill(position_ids):
            graph = self.context_encoding_model
            self.kv_cache_populated = True
        else:
            graph = self.token_generation_model
        return graph(input_ids, attention_mask, position_ids, seq_ids, sampling_params, prev_hidden, adapter_ids,
                     *llava_args), True


def load_on_cpu(app, module):
    """Build the application's CTE and TKG wrappers and 'load' ``module`` as their graphs."""
    app.enable_context_encoding()
    app.enable_token_generation()
    for wrapper in (app.context_encoding_model, app.token_generation_model):
        wrapper.model = CompiledGraphs(module, wrapper)
    return app
