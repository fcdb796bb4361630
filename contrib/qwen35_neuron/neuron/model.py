"""Qwen3.5 MoE as an NxDI model: our backend-neutral modules, NxD layers, a real hybrid cache.

``NeuronQwen35MoeModel`` is the traced module (one graph per bucket, CTE and TKG). It holds the
text model's modules under their canonical names, so the converted checkpoint loads by name, and
one state buffer per :func:`~qwen35_neuron.neuron_layout.layout.state_buffers` entry in the
``past_key_values`` ParameterList, shown to NxDI as ``kv_mgr.past_key_values``
(:class:`HybridStateView`): NxDI's model instance then aliases buffer i to state output i in every
graph (KV only for attention layers, conv and fp32 recurrent state only for DeltaNet layers; no
dummy KV), and in NxDI's CPU mode copies the returned states back into them.

The traced forward takes NxDI's standard inputs and derives ours from them
(:func:`step_from_nxdi`): the cache position of slot 0 is ``position_ids[:, 0]`` (KV write index and
attention length come from it, never from a rotary position), the real tokens per row come from
the attention mask. A row whose cache position is 0 starts from zero state, so a new request in
row ``seq_ids[b]`` resets only that row. ``Qwen35MoeForCausalLM`` is what users instantiate.

Images: after the standard inputs every graph takes the VL inputs of :mod:`.vl_inputs` (NxDI's
``llava_args`` slots): CTE the image embeddings, image-token mask and mRoPE ids, TKG each row's rope
delta. :class:`Qwen35ModelWrapper` traces them and fills in their text values when a caller passes
none, so one set of graphs serves text and images.

Not run on hardware: checked on a CPU inside the real NxDI / NxD Python in NxDI's CPU mode
(tests/real_sdk) and against the pinned SDK's names with the manifest check.
"""

from __future__ import annotations

import itertools
import os
from typing import Iterator

import torch
from torch import nn

from neuronx_distributed.parallel_layers.mappings import gather_from_tensor_model_parallel_region
from neuronx_distributed_inference.models.model_base import NeuronBaseForCausalLM, NeuronBaseModel
from neuronx_distributed_inference.models.model_wrapper import (
    CONTEXT_ENCODING_MODEL_TAG,
    ModelWrapper,
)
from neuronx_distributed_inference.modules.generation.sampling import create_sampler

from ..checkpoint.expected import expected_mtp_shapes, expected_text_shapes
from ..checkpoint.loader import iter_mtp_tensors, iter_text_tensors
from ..checkpoint.progress import byte_bar
from ..errors import Qwen35Error
from ..model.mtp import MtpDrafter, MtpHead
from ..model.nxdi_step import nxdi_speculative_step, nxdi_text_step, step_from_nxdi  # noqa: F401 (re-exported)
from ..model.rotary import MultimodalRotary
from ..model.text_model import Qwen35TextModel
from ..neuron_layout.layout import neuron_checkpoint, state_buffers, tie_lm_head
from ..neuron_layout.rank_files import write_rank_checkpoints
from .chunked_prefill import chunk_rounds, refuse_continued_prefill, run_rounds
from .config import Qwen35MoeInferenceConfig
from .device_ops import neuron_ops
from .provider import NxdProvider, mark_tp_parameters
from .vl_inputs import (
    NXDI_STANDARD_INPUTS,
    PaddedCall,
    batch_order,
    fit_inputs,
    full_batch_order,
    pad_rows,
    restore_order,
    text_inputs,
    vl_input_names,
)


class HybridStateView:
    """What NxDI's host code reads of a model's cache manager: ``past_key_values``, the state buffers
    in output order.

    NxDI's model instance aliases ``kv_mgr.past_key_values[i]`` to state output i (on trn2 the device
    keeps them), and in CPU mode the application and the wrapper copy each returned state into
    ``kv_mgr.past_key_values[i]``. Our hybrid cache is not a KVCacheManager (DeltaNet layers hold conv
    and recurrent state, no KV), so the model owns its buffers and shows them here. Not a module: the
    parameter names stay ``past_key_values.{i}``.
    """

    def __init__(self, buffers: nn.ParameterList) -> None:
        self.past_key_values = buffers


class NeuronQwen35MoeModel(NeuronBaseModel):
    """The traced model of one graph (CTE or TKG, one bucket)."""

    def setup_attr_for_model(self, config: Qwen35MoeInferenceConfig) -> None:
        nc = config.neuron_config
        self.on_device_sampling = nc.on_device_sampling_config is not None
        self.tp_degree = nc.tp_degree
        self.hidden_size = config.hidden_size
        self.num_attention_heads = config.num_attention_heads
        self.num_key_value_heads = config.num_key_value_heads
        self.max_batch_size = nc.max_batch_size
        self.buckets = nc.buckets

    def init_model(self, config: Qwen35MoeInferenceConfig) -> None:
        text, settings = config.text(), config.settings()
        self.num_drafts = settings.num_speculative_tokens
        # The LM head keeps its vocabulary shard when the graph samples: NxD's argmax reduces across the
        # ranks. It gathers the whole vocabulary when the host samples (logits out), for speculation (greedy
        # acceptance and MTP drafts in the graph), and in NxDI's CPU mode (on_cpu), whose sampler takes
        # torch's argmax of this rank's logits.
        self.logits_gathered = not self.on_device_sampling or self.num_drafts > 0 or config.neuron_config.on_cpu
        provider = NxdProvider(settings.tp_degree, config.neuron_config.torch_dtype,
                               gather_logits=self.logits_gathered)
        core = Qwen35TextModel(text, provider, moe_impl="static", chunk_size=settings.gdr_chunk_size,
                               moe_block_size=settings.moe_block_size,
                               ops=neuron_ops(settings, text))
        if settings.moe_backend == "nxd" and text.is_moe:  # the dense family has no MoE to replace
            from .nxd_moe import use_nxd_moe  # lazy: NxD's MoE modules load only when chosen

            use_nxd_moe(core.layers, text, config.neuron_config)
        # the text model's modules, registered under their canonical names (checkpoint keys)
        self.embed_tokens, self.layers = core.embed_tokens, core.layers
        self.norm, self.lm_head = core.norm, core.lm_head
        self.rotary = core.rotary
        self._text_model = [core]  # a list keeps it out of the module tree: no second set of names
        self.text = text
        if self.num_drafts:  # the MTP head under its checkpoint names (mtp.*), drafting with the shared modules
            self.mtp = MtpHead(text, provider, moe_impl="static", chunk_size=settings.gdr_chunk_size,
                               moe_block_size=settings.moe_block_size)
            self._drafter = [MtpDrafter(self.mtp, core.embed_tokens, core.lm_head, core.rotary, core.ops)]
        self.marked_parameters = mark_tp_parameters(self, settings.tp_degree)

    def init_inference_optimization(self, config: Qwen35MoeInferenceConfig) -> None:
        nc = config.neuron_config
        if self.on_device_sampling:
            self.sampler = create_sampler(nc, lm_head_tp_degree=nc.tp_degree)
        self.state_layout = state_buffers(self.text, nc.kv_cache_batch_size, nc.max_length, nc.torch_dtype,
                                          nc.tp_degree, mtp=self.num_drafts > 0)
        self.past_key_values = nn.ParameterList(
            nn.Parameter(torch.zeros(buf.shape, dtype=buf.dtype), requires_grad=False) for buf in self.state_layout)
        self.kv_mgr = HybridStateView(self.past_key_values)  # what NxDI aliases and copies back

    def restore_fp32(self) -> None:
        """Undo a global cast where fp32 is part of the contract: the recurrent state buffers (zeros at
        load, so exact) and the rotary frequencies (recomputed)."""
        for buf, param in zip(self.state_layout, self.past_key_values):
            if param.dtype != buf.dtype:
                param.data = param.data.to(buf.dtype)
        fresh = MultimodalRotary(self.text)
        self.rotary.inv_freq = fresh.inv_freq.to(self.rotary.inv_freq.device)

    def _apply(self, fn, recurse=True):
        """Every whole-module cast keeps the fp32 contract: NxDI's model instance casts with ``_apply``
        (``cast_type='config'``, before tracing), its CPU mode with ``.bfloat16()`` (``to_cpu``)."""
        module = super()._apply(fn, recurse)
        if "past_key_values" in self._modules:  # built (NxDI's __init__ may move modules before that)
            self.restore_fp32()
        return module

    def forward(self, input_ids, attention_mask, position_ids, seq_ids, sampling_params, prev_hidden=None,
                adapter_ids=None, *vl_inputs):
        """NxDI's seven standard inputs, then the VL inputs (``vl_inputs.CTE_VL_INPUTS`` or
        ``TKG_VL_INPUTS``; none: text) -> [tokens or logits [B, 1, V], (logits), *new state buffers].
        Compiled for speculation (``num_speculative_tokens`` K > 0): the CTE and verify graphs of
        :func:`~qwen35_neuron.model.nxdi_step.nxdi_speculative_step` (greedy, text; output 0 packs tokens)."""
        if self.num_drafts:
            states = list(self.past_key_values)
            packed, new_states = nxdi_speculative_step(self._text_model[0], self._drafter[0], self.num_drafts,
                                                       input_ids, attention_mask, position_ids, seq_ids,
                                                       states[:-2], states[-2:])
            return [packed] + new_states
        if vl_inputs:
            self.check_vl_inputs(input_ids, vl_inputs)
        logits, new_states = nxdi_text_step(self._text_model[0], input_ids, attention_mask, position_ids, seq_ids,
                                            list(self.past_key_values), vl_inputs)
        logits = logits[:, None, :]
        if self.on_device_sampling:
            outputs = [self._sample_on_device(logits, sampling_params, False, input_ids.shape[1] > 1)]
            if self.neuron_config.output_logits:
                outputs.append(logits if self.logits_gathered else gather_from_tensor_model_parallel_region(logits))
        else:
            outputs = [logits]  # output_logits needs on-device sampling (NeuronSettings checks it)
        return outputs + list(new_states)

    @staticmethod
    def check_vl_inputs(input_ids: torch.Tensor, vl_inputs: tuple) -> None:
        names = vl_input_names(input_ids.shape[1] > 1)
        if len(vl_inputs) != len(names):
            raise Qwen35Error(f"this graph takes the VL inputs {list(names)} after NxDI's seven, got {len(vl_inputs)}")


class Qwen35ModelWrapper(ModelWrapper):
    """NxDI's wrapper with the VL inputs after the seven standard ones (see :mod:`.vl_inputs`), and
    partial batches that leave the rows nobody asked for untouched.

    NxD routes a call to the graph whose traced input shapes it matches exactly, so every call must
    carry the VL inputs: callers without images get the text values in :meth:`pad_inputs`.

    A call with fewer rows than the compiled batch goes through NxDI's ``_forward_with_pad``: it fills
    the missing seq ids with copies of the first row and runs every row. For a KV cache that rewrites
    the same values; for DeltaNet's recurrent state it would advance (or, in a context encoding,
    restart) every other row with the first row's tokens. So the filled rows get an all-zero attention
    mask here - a row without real tokens keeps its state in our graphs - and the VL inputs, which
    NxDI does not pass on (it keeps only the first eight inputs), are padded in its row order. Both
    happen on the host, the same on a trn2 host and in NxDI's CPU mode. A call covering every state
    row runs with its rows sorted by seq id (the graph then updates the buffers in place, row by row).
    """

    _padded_call: PaddedCall | None = None

    def _is_cte(self) -> bool:
        return self.tag == CONTEXT_ENCODING_MODEL_TAG

    def input_generator(self):
        """NxDI's examples per bucket plus the VL inputs, so they are traced into every graph."""
        dtype = self.config.neuron_config.torch_dtype
        return [(*example, *text_inputs(self._is_cte(), example[2], self.config.hidden_size, dtype))
                for example in super().input_generator()]

    def pad_inputs(self, *args, pad_type="first_fit"):
        """NxDI's bucket padding of the standard inputs; VL inputs fitted to the bucket (text values
        when the caller gave none)."""
        standard = super().pad_inputs(*args[:NXDI_STANDARD_INPUTS], pad_type=pad_type)
        vl = fit_inputs(self._is_cte(), args[NXDI_STANDARD_INPUTS:], standard[2], self.config.hidden_size,
                        self.config.neuron_config.torch_dtype)
        return (*standard, *vl)

    def _forward_with_pad(self, *args):
        nc = self.neuron_config
        order = batch_order(args[3], nc.max_batch_size)
        self._padded_call = PaddedCall(filler_rows=order >= args[3].shape[0],
                                       vl_inputs=pad_rows(args[NXDI_STANDARD_INPUTS:], order, nc.batch_size))
        try:
            return super()._forward_with_pad(*args[:NXDI_STANDARD_INPUTS])
        finally:
            self._padded_call = None

    def _forward(self, *args):
        if self._padded_call is not None and len(args) == NXDI_STANDARD_INPUTS:
            args = self._padded_call.complete(args)
        rows = args[3].shape[0]
        order = full_batch_order(args[3], self.neuron_config.kv_cache_batch_size)
        if order is None:
            return super()._forward(*args)
        sorted_args = [a.index_select(0, order) if isinstance(a, torch.Tensor) and a.dim() and a.shape[0] == rows
                       else a for a in args]
        return restore_order(super()._forward(*sorted_args), order, per_request_outputs(self.neuron_config))


def non_cte_widths(neuron_config) -> set[int]:
    """Call widths NxDI routes to a token-generation or verify graph when no row starts at position 0."""
    return {1, neuron_config.speculation_length} - {0}


def per_request_outputs(neuron_config) -> int:
    """Graph outputs with one row per request before the state buffers: tokens or logits, and the
    logits beside on-device tokens when ``output_logits``."""
    return 2 if neuron_config.on_device_sampling_config and neuron_config.output_logits else 1


class Qwen35MoeForCausalLM(NeuronBaseForCausalLM):
    """Compile-then-load application: ``Qwen35MoeForCausalLM(model_dir, config).compile(out)``, then
    ``Qwen35MoeForCausalLM(out).load(out)``; generate text through NxDI's HuggingFaceGenerationAdapter or
    :func:`qwen35_neuron.neuron.generation.generate_direct`, images through
    :class:`qwen35_neuron.neuron.vl_session.NeuronVLSession` (``forward(..., llava_args=...)``)."""

    _model_cls = NeuronQwen35MoeModel

    @classmethod
    def get_config_cls(cls):
        return Qwen35MoeInferenceConfig

    def get_model_wrapper_cls(self):
        return Qwen35ModelWrapper

    def _is_prefill(self, position_ids) -> bool:
        """NxDI runs the context-encoding graph when some row starts at position 0. A later chunk of a
        long prompt starts further on and is a context encoding all the same: so is every call with
        more than one slot per row that is not a verify call (``speculation_length`` slots; chunks are
        never sent at that width, see :func:`.chunked_prefill.chunk_width`)."""
        width = position_ids.shape[-1]
        return super()._is_prefill(position_ids) or width not in non_cte_widths(self.neuron_config)

    def _get_model_outputs(self, input_ids, attention_mask, position_ids, seq_ids, sampling_params, prev_hidden,
                           adapter_ids, medusa_args, llava_args, *args, **kwargs):
        """NxDI's routing; a context encoding wider than the largest bucket runs as chunks of it
        (:mod:`.chunked_prefill`), each through NxDI's routing, padding and CPU-mode state copy-back."""
        def call(ids, mask, positions, rows, vl):
            return super(Qwen35MoeForCausalLM, self)._get_model_outputs(
                ids, mask, positions, _rows(seq_ids, rows), _rows(sampling_params, rows), _rows(prev_hidden, rows),
                _rows(adapter_ids, rows), medusa_args, vl, *args, **kwargs)

        settings = self.config.settings()
        buckets = settings.context_buckets
        if settings.deltanet_kernel == "nkilib" and self._is_prefill(position_ids):
            refuse_continued_prefill(attention_mask, position_ids, buckets)
        if input_ids.shape[-1] <= max(buckets):
            return call(input_ids, attention_mask, position_ids, None, llava_args)
        rounds = chunk_rounds(input_ids, attention_mask, position_ids, list(llava_args or []), buckets,
                              avoid=non_cte_widths(self.neuron_config))
        return run_rounds(rounds, lambda r: call(r.input_ids, r.attention_mask, r.position_ids, r.rows, r.llava_args),
                          carry=lambda outputs: self._copy_past_key_values(outputs),
                          per_row_outputs=per_request_outputs(self.neuron_config))

    def _copy_past_key_values(self, outputs) -> None:
        """NxDI's CPU-mode copy-back (its graphs are separate eager modules there; a device shares the
        aliased buffers): the returned state buffers into the context-encoding graph and the generation
        graph NxDI built. NxDI's own writes its token-generation model, which it does not build when
        compiled for speculation (its speculation model is our verify graph then)."""
        new_states = outputs[per_request_outputs(self.neuron_config) + self._get_captured_tensors_offset():]
        for wrapper in (self.context_encoding_model, self.get_generation_model()):
            for param, new in zip(wrapper.model.kv_mgr.past_key_values, new_states):
                param.data = new

    def get_compiler_args(self):
        """None keeps NxDI's per-graph defaults (they carry --lnc); custom args get --lnc added."""
        args = self.config.settings().compiler_args
        if args is None:
            return None
        return args if "--lnc" in args else f"{args} --lnc={self.neuron_config.logical_nc_config}"

    @classmethod
    def get_state_dict(cls, model_name_or_path, config):
        """The whole converted checkpoint as one dict, which NxDI's shard-at-load and CPU paths need
        (``checkpoint_loader_fn``): streamed from the safetensors in the run dtype (tensor gate first,
        values checked), converted one tensor at a time. Compiling with pre-sharding (the default)
        never calls it: :meth:`shard_weights` writes the per-rank files tensor by tensor."""
        _, tensors = canonical_checkpoint(_checkpoint_dir(config, model_name_or_path), config,
                                          byte_bar("reading the checkpoint"))
        settings = config.settings()
        return tie_lm_head(dict(neuron_checkpoint(tensors, config.text(), settings.tp_degree, settings.moe_backend)))

    def shard_weights(self, compiled_model_path, debug=False, pre_shard_weights_hook=None):
        """NxDI's pre-sharding at compile time, streamed: each tensor is read, cut for every local rank
        and appended to ``weights/tp{r}_sharded_checkpoint.safetensors`` before the next is read
        (NxD's own sharder holds the whole checkpoint and every rank's copy). NxDI's path runs when
        pre-sharding is off, or when its layout-transformation option asks for its own post-processing."""
        nc = self.neuron_config
        if (getattr(nc, "skip_sharding", False) or not getattr(nc, "save_sharded_checkpoint", False)
                or getattr(nc, "lora_config", None) is not None or LAYOUT_TRANSFORMATION_ENV in os.environ):
            return super().shard_weights(compiled_model_path, debug, pre_shard_weights_hook)
        if pre_shard_weights_hook:
            pre_shard_weights_hook(self)
        start = getattr(nc, "start_rank_id", 0) or 0
        local = getattr(nc, "local_ranks_size", None) or nc.tp_degree
        shapes, tensors = canonical_checkpoint(_checkpoint_dir(self.config, self.model_path), self.config,
                                               byte_bar("sharding the checkpoint"))
        settings = self.config.settings()
        write_rank_checkpoints(tensors, shapes, self.config.text(), settings.tp_degree,
                               os.path.join(compiled_model_path, "weights"), moe_backend=settings.moe_backend,
                               dtype=nc.torch_dtype, ranks=range(start, start + local))

    @staticmethod
    def convert_hf_to_neuron_state_dict(state_dict, config):
        """Canonical text tensors (fused experts) -> the checkpoint NxD shards."""
        settings = config.settings()
        return dict(neuron_checkpoint(state_dict, config.text(), settings.tp_degree, settings.moe_backend))

    @staticmethod
    def update_state_dict_for_tied_weights(state_dict):
        tie_lm_head(state_dict)

    @staticmethod
    def load_hf_model(model_path):
        raise Qwen35Error(f"{Qwen35MoeForCausalLM.__name__} never builds the Hugging Face model: weights stream "
                          f"from {model_path}/*.safetensors through get_state_dict")


def _rows(tensor, rows: torch.Tensor | None):
    """A per-row input of NxDI's forward for the rows of one chunk call (None and non-row inputs pass)."""
    if rows is None or not isinstance(tensor, torch.Tensor) or tensor.dim() == 0 or tensor.numel() == 0:
        return tensor
    return tensor.index_select(0, rows)


class Qwen35ForCausalLM(Qwen35MoeForCausalLM):
    """The dense Qwen3.5 family (``qwen3_5``: 0.8B ... 27B) on NxDI. The same traced model and state
    contract: the decoder layers are built with the checkpoint's dense MLP (ColumnParallel gate/up,
    RowParallel down) where the MoE family has its sparse MoE, so one class serves both; this name
    exists for callers and registries that key by the dense architecture."""


LAYOUT_TRANSFORMATION_ENV = "NXD_LAYOUT_TRANSFORMATION_OPTIONS"  # NxDI then re-lays the sharded weights itself


def _checkpoint_dir(config, fallback) -> str:
    """The Hugging Face directory the weights come from (NxDI's ``_name_or_path``, as its loader)."""
    model_dir = getattr(config, "_name_or_path", None) or fallback
    if not model_dir or not os.path.isdir(model_dir):
        raise Qwen35Error(f"{model_dir} is not a checkpoint directory: pass the Hugging Face model directory")
    return model_dir


def canonical_checkpoint(model_dir: str, config, progress=None) -> tuple[dict[str, tuple[int, ...]], Iterator]:
    """(canonical name -> shape, in order; the (name, tensor) stream of those tensors) the Neuron model
    loads: the text model (a tied LM head read as the embedding), then the MTP head when it drafts.
    Tensors come one at a time in the run dtype, gated and value-checked."""
    text, settings = config.text(), config.settings()
    dtype = config.neuron_config.torch_dtype
    shapes = dict(expected_text_shapes(text))
    if text.tie_word_embeddings:
        shapes["lm_head.weight"] = shapes["embed_tokens.weight"]
    tensors = iter_text_tensors(model_dir, text, dtype=dtype, progress=progress)
    if settings.num_speculative_tokens:  # the MTP head too (checked: exactly one MTP layer)
        shapes.update(expected_mtp_shapes(text, 1))
        tensors = itertools.chain(tensors, iter_mtp_tensors(model_dir, text, dtype=dtype))
    return shapes, tensors
