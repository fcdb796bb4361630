"""Minimal stand-ins for the Neuron SDK classes the neuron layer builds on, so its wiring runs on a CPU.

They copy the behaviour our code relies on, as read in the pinned sources (NxDI ef2731ef8c57, NxD
fbac349b61a3): the parallel layers' per-rank weight shapes and tensor-parallel attributes,
``NeuronBaseModel.__init__``'s call order, ``InferenceConfig``'s load hook / JSON reload, the
model instance's global cast (``cast_type='config'``) and its alias map when ``kv_mgr is None``; the
application -> wrapper -> graph call path is in ``fake_wrapper``.
Collectives are identities, so forwards are only meaningful at TP 1. What they cannot show is how
the real SDK traces, compiles and shards: that needs a trn2 host (``-m neuron`` tests).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import types

import torch
import torch.nn.functional as F
from torch import nn

import fake_wrapper
from fake_wrapper import ModelWrapper, NeuronBaseForCausalLM

TP = [1]  # the tensor-parallel size the fake parallel state reports
# decided once, before any stand-in is installed: is the real SDK importable here?
SDK_PRESENT = "torch_neuronx" not in sys.modules and importlib.util.find_spec("torch_neuronx") is not None
TP_ATTRIBUTES = ("tensor_model_parallel", "partition_dim", "partition_stride", "num_partitions", "rank_ordering")


def set_tensor_model_parallel_attributes(tensor, is_parallel, dim, stride, num_partitions=-1, rank_ordering=None):
    for name in TP_ATTRIBUTES:
        assert not hasattr(tensor, name), f"{name} already set"
    values = (is_parallel, dim, stride, TP[0] if num_partitions == -1 else num_partitions, rank_ordering)
    for name, value in zip(TP_ATTRIBUTES, values):
        setattr(tensor, name, value)


class BaseParallelLinear(nn.Module):
    pass


def _param(shape, dtype, dim=None):
    weight = nn.Parameter(torch.zeros(shape, dtype=dtype or torch.float32), requires_grad=False)
    if dim is not None:
        set_tensor_model_parallel_attributes(weight, True, dim, 1, TP[0])
    return weight


class ColumnParallelLinear(BaseParallelLinear):
    def __init__(self, input_size, output_size, bias=True, gather_output=True, dtype=torch.float32, **_):
        super().__init__()
        assert not bias and output_size % TP[0] == 0
        self.gather_output = gather_output
        self.weight = _param((output_size // TP[0], input_size), dtype, dim=0)

    def forward(self, x):
        return F.linear(x, self.weight)


class RowParallelLinear(BaseParallelLinear):
    def __init__(self, input_size, output_size, bias=True, input_is_parallel=False, dtype=torch.float32, **_):
        super().__init__()
        assert not bias and input_is_parallel and input_size % TP[0] == 0
        self.weight = _param((output_size, input_size // TP[0]), dtype, dim=1)

    def forward(self, x):
        return F.linear(x, self.weight)


class ParallelEmbedding(nn.Module):
    def __init__(self, num_embeddings, embedding_dim, dtype=torch.float32, shard_across_embedding=False, **_):
        super().__init__()
        shape = (num_embeddings, embedding_dim // TP[0]) if shard_across_embedding else (num_embeddings // TP[0],
                                                                                         embedding_dim)
        self.weight = _param(shape, dtype, dim=1 if shard_across_embedding else 0)

    def forward(self, ids):
        return F.embedding(ids.to(torch.long), self.weight)


class SPMDRank(nn.Module):
    def __init__(self, world_size, tensor_model_parallel_size=None):
        super().__init__()
        self.rank = nn.Parameter(torch.zeros(1, dtype=torch.int32), requires_grad=False)
        set_tensor_model_parallel_attributes(self.rank, True, 0, 1, world_size)

    def get_rank(self):
        return self.rank


def _identity(input_, process_group=None):
    return input_


class NeuronConfig:
    def __init__(self, **kwargs):
        dtype = kwargs.pop("torch_dtype", torch.bfloat16)
        self.torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        self.batch_size = kwargs.pop("batch_size", 1)
        self.seq_len = kwargs.pop("seq_len", 128)
        self.max_length = kwargs.pop("max_length", self.seq_len)
        self.max_context_length = kwargs.pop("max_context_length", self.seq_len)
        for name in ("ctx_batch_size", "tkg_batch_size", "max_batch_size", "kv_cache_batch_size"):
            setattr(self, name, kwargs.pop(name, self.batch_size))
        self.tp_degree = kwargs.pop("tp_degree", 1)
        self.logical_nc_config = kwargs.pop("logical_nc_config", 1)
        self.cast_type = kwargs.pop("cast_type", "config")
        self.output_logits = kwargs.pop("output_logits", False)
        self.on_cpu = kwargs.pop("on_cpu", False)
        sampling = kwargs.pop("on_device_sampling_config", None)
        self.on_device_sampling_config = types.SimpleNamespace(**sampling) if isinstance(sampling, dict) else sampling
        self.context_encoding_buckets = kwargs.pop("context_encoding_buckets", None)
        self.buckets = kwargs.pop("buckets", [self.seq_len])
        self.speculation_length = kwargs.pop("speculation_length", 0)
        for name, value in kwargs.items():
            setattr(self, name, value)


class MoENeuronConfig(NeuronConfig):
    pass


def _to_dict(obj):
    if isinstance(obj, dict):
        return {k: _to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_dict(v) for v in obj]
    if isinstance(obj, torch.dtype):
        return str(obj).split(".")[1]
    if hasattr(obj, "__dict__"):
        return {k: _to_dict(v) for k, v in obj.__dict__.items()}
    return obj


class InferenceConfig:
    def __init__(self, neuron_config, fused_spec_config=None, load_config=None, metadata=None, **kwargs):
        self.neuron_config = neuron_config
        self.fused_spec_config = fused_spec_config
        if load_config is not None:
            load_config(self)
        else:
            self.load_config()
        self.metadata = metadata
        for key, value in kwargs.items():
            setattr(self, key, value)
        self.num_cores_per_group = 1
        missing = [name for name in self.get_required_attributes() if not hasattr(self, name)]
        assert not missing, f"Config must define {missing}"

    def load_config(self):
        pass

    def get_required_attributes(self):
        return []

    def save(self, model_path):
        os.makedirs(model_path, exist_ok=True)
        with open(os.path.join(model_path, "neuron_config.json"), "w") as f:
            json.dump(_to_dict(self), f, indent=2, sort_keys=True)

    @classmethod
    def load(cls, model_path, **kwargs):
        with open(os.path.join(model_path, "neuron_config.json")) as f:
            merged = json.load(f)
        merged.update(kwargs)
        merged["neuron_config"] = cls.get_neuron_config_cls()(**merged["neuron_config"])
        return cls(**merged)

    @classmethod
    def get_neuron_config_cls(cls):
        return NeuronConfig


class NeuronBaseModel(nn.Module):
    def __init__(self, config, optimize_inference=True):
        super().__init__()
        self.config = config
        self.neuron_config = config.neuron_config
        self.sampler = None
        self.kv_mgr = None
        self.rank_util = SPMDRank(world_size=config.neuron_config.tp_degree)
        self.setup_attr_for_model(config)
        self.init_model(config)
        if optimize_inference:
            self.init_inference_optimization(config)

    def _sample_on_device(self, logits, sampling_params, is_for_speculation, is_for_context_encoding):
        return logits[:, -1, :].argmax(dim=-1).to(torch.int32)


class DecoderModelInstance:
    def __init__(self, model_cls, config, **kwargs):
        self.model_cls, self.config, self.neuron_config, self.kwargs = model_cls, config, config.neuron_config, kwargs
        self.module = None

    def load_module(self):
        model = self.model_cls(self.config, **self.kwargs).eval()
        dtype = self.neuron_config.torch_dtype
        if self.neuron_config.cast_type == "config" and dtype != torch.float32:
            model._apply(lambda t: t.to(dtype) if t.is_floating_point() else t)
        self.module = model

    def get(self, bucket_rank, **kwargs):
        outputs_before = 2 if self.neuron_config.output_logits else 1
        states = self.module.kv_mgr.past_key_values if self.module.kv_mgr is not None else self.module.past_key_values
        return self.module, {param: outputs_before + i for i, param in enumerate(states)}


def create_sampler(neuron_config, lm_head_tp_degree=None, do_sample=None):
    return lambda logits, params, rank_id=None: logits.argmax(dim=-1)


def _module(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    module.__spec__ = None
    return module


def build_modules() -> dict[str, types.ModuleType]:
    """Fresh fake modules by import name (packages included)."""
    nxd, nxdi = "neuronx_distributed", "neuronx_distributed_inference"
    parallel_state = _module(f"{nxd}.parallel_layers.parallel_state",
                             get_tensor_model_parallel_size=lambda: TP[0],
                             get_tensor_model_parallel_group=lambda as_list=False: None,
                             get_expert_model_parallel_group=lambda as_list=False: None)
    mods = {
        "torch_neuronx": _module("torch_neuronx"),
        nxd: _module(nxd),
        f"{nxd}.parallel_layers": _module(f"{nxd}.parallel_layers", parallel_state=parallel_state),
        f"{nxd}.parallel_layers.parallel_state": parallel_state,
        f"{nxd}.parallel_layers.layers": _module(
            f"{nxd}.parallel_layers.layers", BaseParallelLinear=BaseParallelLinear,
            ColumnParallelLinear=ColumnParallelLinear, RowParallelLinear=RowParallelLinear,
            ParallelEmbedding=ParallelEmbedding, SPMDRank=SPMDRank),
        f"{nxd}.parallel_layers.mappings": _module(
            f"{nxd}.parallel_layers.mappings", reduce_from_tensor_model_parallel_region=_identity,
            gather_from_tensor_model_parallel_region=_identity),
        f"{nxd}.parallel_layers.utils": _module(
            f"{nxd}.parallel_layers.utils", set_tensor_model_parallel_attributes=set_tensor_model_parallel_attributes),
        nxdi: _module(nxdi),
        f"{nxdi}.models": _module(f"{nxdi}.models"),
        f"{nxdi}.models.config": _module(f"{nxdi}.models.config", InferenceConfig=InferenceConfig,
                                         MoENeuronConfig=MoENeuronConfig, NeuronConfig=NeuronConfig),
        f"{nxdi}.models.model_base": _module(f"{nxdi}.models.model_base", NeuronBaseModel=NeuronBaseModel,
                                             NeuronBaseForCausalLM=NeuronBaseForCausalLM),
        f"{nxdi}.models.model_wrapper": _module(
            f"{nxdi}.models.model_wrapper", DecoderModelInstance=DecoderModelInstance, ModelWrapper=ModelWrapper,
            CONTEXT_ENCODING_MODEL_TAG=fake_wrapper.CONTEXT_ENCODING_MODEL_TAG,
            TOKEN_GENERATION_MODEL_TAG=fake_wrapper.TOKEN_GENERATION_MODEL_TAG),
        f"{nxdi}.modules": _module(f"{nxdi}.modules"),
        f"{nxdi}.modules.generation": _module(f"{nxdi}.modules.generation"),
        f"{nxdi}.modules.generation.sampling": _module(f"{nxdi}.modules.generation.sampling",
                                                       create_sampler=create_sampler),
    }
    return mods


def purge_neuron_layer() -> None:
    """Forget imported qwen35_neuron.neuron modules (they bound whichever SDK was present)."""
    for name in [n for n in sys.modules if n == "qwen35_neuron.neuron" or n.startswith("qwen35_neuron.neuron.")]:
        del sys.modules[name]
