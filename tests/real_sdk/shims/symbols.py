"""Which closed-SDK symbols the real NxDI 0.9 / NxD 0.18 Python imports on the CPU path, and the few
that CPU mode really uses.

``PLACEHOLDERS``: module -> the names imported from it (read from the sources' import lines and
found by importing NxDI's application, model base, HF adapter and our neuron layer). Each is a
:class:`~.placeholder.Placeholder`. ``CPU_MODE``: the names NxDI/NxD call or read even in CPU mode,
with the behaviour CPU mode needs; nothing else gets one.
"""

from __future__ import annotations

import functools
from typing import Callable

from .placeholder import Placeholder, not_here

PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "libneuronxla": ("neuron_xla_compile", "neuron_xla_wlo_compile"),
    "neuronxcc": (),
    "neuronxcc.nki": (),
    "neuronxcc.nki._pre_prod_kernels": (),
    "neuronxcc.nki._pre_prod_kernels.blockwise_mm": ("blockwise_mm_baseline", "blockwise_mm_baseline_shard_hidden"),
    "neuronxcc.nki._pre_prod_kernels.blockwise_mm_bwd": ("blockwise_mm_bwd", "blockwise_mm_bwd_baseline_shard_hidden"),
    "neuronxcc.nki._pre_prod_kernels.collectives": (),
    "neuronxcc.nki._pre_prod_kernels.ring_attention": ("ring_attention_bwd", "ring_attention_fwd"),
    "neuronxcc.nki.compiler": (),
    "neuronxcc.nki.compiler.backends": (),
    "neuronxcc.nki.compiler.backends.neuron": (),
    "neuronxcc.nki.compiler.backends.neuron.dimensions": ("VNC",),
    "neuronxcc.nki.kernels": (),
    "neuronxcc.nki.kernels.attention": ("FlashConfig",),
    "neuronxcc.nki.language": (),
    "nki": (),
    "nki.isa": (),
    "nki.language": ("bfloat16", "float4_e2m1fn_x4", "ndarray"),
    "nkilib": (),
    "nkilib.core": (),
    "nkilib.core.cumsum": (),
    "nkilib.core.cumsum.cumsum": ("cumsum",),
    "nkilib.core.max": (),
    "nkilib.core.max.cascaded_max": ("cascaded_max",),
    "nkilib.core.moe": (),
    "nkilib.core.moe.moe_cte": (),
    "nkilib.core.moe.moe_cte.bwmm_shard_on_I": ("blockwise_mm_baseline_shard_intermediate",
                                                "blockwise_mm_baseline_shard_intermediate_hybrid",
                                                "blockwise_mm_shard_intermediate_dropping"),
    "nkilib.core.moe.moe_cte.bwmm_shard_on_block": ("bwmm_shard_on_block",),
    "nkilib.core.moe.moe_cte.bwmm_shard_on_block_mx": ("bwmm_shard_on_block_mx",),
    "nkilib.core.moe.moe_cte.moe_cte": ("moe_cte",),
    "nkilib.core.moe.moe_cte.moe_cte_utils": ("BlockShardStrategy",),
    "nkilib.core.moe_block": (),
    "nkilib.core.moe_block.moe_block_tkg": ("moe_block_tkg",),
    "nkilib.core.output_projection": (),
    "nkilib.core.output_projection.output_projection_cte": ("output_projection_cte",),
    "nkilib.core.qkv": (),
    "nkilib.core.qkv.qkv": ("qkv",),
    "nkilib.core.subkernels": (),
    "nkilib.core.subkernels.find_nonzero_indices": ("find_nonzero_indices",),
    "nkilib.core.subkernels.indexed_flatten": ("indexed_flatten",),
    "nkilib.core.topk": ("topk",),
    "nkilib.core.utils": (),
    "nkilib.core.utils.common_types": ("ActFnType", "ExpertAffinityScaleMode", "NormType", "QKVOutputLayout",
                                       "RouterActFnType"),
    "nkilib.core.utils.kernel_helpers": ("get_verified_program_sharding_info", "kernel_assert"),
    "nkilib.core.utils.tensor_view": ("TensorView",),
    "torch_neuronx": ("BucketModelConfig",),
    "torch_neuronx.experimental": (),
    "torch_neuronx.experimental.profiler": (),
    "torch_neuronx.experimental.profiler.v2_x": (),
    "torch_neuronx.experimental.profiler.v2_x.custom_op_name": ("hlo_debug",),
    "torch_neuronx.proto": ("metaneff_pb2",),
    "torch_neuronx.pyhlo": ("hlo_pb2", "xla_data_pb2"),
    "torch_neuronx.utils": (),
    "torch_neuronx.utils.utils": ("SUPPORTED_TYPES",),
    "torch_neuronx.xla_impl": ("structure",),
    "torch_neuronx.xla_impl.base": ("xla_call",),
    "torch_neuronx.xla_impl.bucket_trace": ("create_bucket_model",),
    "torch_neuronx.xla_impl.custom_call_targets": ("AwsNeuronModuleMarkerEndForward",
                                                   "AwsNeuronModuleMarkerStartForward"),
    "torch_neuronx.xla_impl.ops": ("Argmax", "ConcatenateOp", "RmsNorm", "TopK"),
    "torch_neuronx.xla_impl.torchscript": ("replace_weights",),
    "torch_neuronx.xla_impl.trace": ("HloArtifacts", "NeffArtifacts", "XLA_DTYPE_TO_METANEFF_DTYPE", "generate_neff",
                                     "get_hlo_computation_by_id", "get_hlo_root_instruction", "get_torch_dtype",
                                     "hlo_entry_computation"),
    "torch_xla": (),
    "torch_xla.core": (),
    "torch_xla.core.xla_env_vars": (),
    "torch_xla.core.xla_model": (),
    "torch_xla.distributed": (),
    "torch_xla.distributed.parallel_loader": ("MpDeviceLoader",),
    "torch_xla.distributed.xla_multiprocessing": (),
    "torch_xla.distributed.zero_redundancy_optimizer": ("ZeroRedundancyOptimizer",),
    "torch_xla.runtime": (),
    "torch_xla.utils": (),
    "torch_xla.utils.checkpoint": ("checkpoint",),
    "torch_xla.utils.serialization": (),
    "torch_xla.utils.utils": ("get_free_tcp_ports",),
    # not a module of its own: torch.classes' namespace of the Neuron runtime's TorchScript classes
    "torch.classes.neuron": ("LayoutTransformation", "SPMDModel"),
}


# Imported only through NxDI's utils.constants (its table of every NxDI model), which vllm-neuron's NxDI
# loader imports (tests/real_vllm). torchvision is open source, but its CPU build is not on PyPI (the PyPI
# wheel needs CUDA's libc10_cuda); only NxDI's mllama image transform imports it, and nothing here runs it.
VLLM_LOADER_PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "neuronxcc.nki.kernels.attention": ("attention_isa_kernel",),
    "neuronxcc.nki.language": ("tile_size",),
    "nkilib.core.attention": (),
    "nkilib.core.attention.attention_cte": (),
    "nkilib.core.mlp": (),
    "nkilib.core.mlp.mlp": ("mlp",),
    "nkilib.core.rmsnorm": (),
    "nkilib.core.rmsnorm.rmsnorm_quant": ("RmsNormQuantKernelArgs", "rmsnorm_quant_kernel"),
    "nkilib.core.utils.common_types": ("QuantizationType",),
    "nkilib.experimental": (),
    "nkilib.experimental.transformer": (),
    "nkilib.experimental.transformer.attention_block_tkg": ("attention_block_tkg",),
    "torchvision": (),
    "torchvision.transforms": (),
    "torchvision.transforms.functional": (),
}
for _module, _names in VLLM_LOADER_PLACEHOLDERS.items():
    PLACEHOLDERS[_module] = PLACEHOLDERS.get(_module, ()) + _names


# ---------------------------------------------------------------------------------------------
# what CPU mode really uses
# ---------------------------------------------------------------------------------------------


def get_platform_target() -> str:
    """NeuronConfig writes it to NEURON_PLATFORM_TARGET_OVERRIDE; NxD picks trn2 defaults (LNC 2) from it."""
    return "trn2"


class CollectivesConfig:
    """``initialize_model_parallel`` builds it from the context-parallel replica groups even on a CPU and
    stores ``rank_src_tgt_pairs[rank]``: each rank's ring, as (source, target) neighbour pairs of its group.
    Only ring attention reads the pairs (not in CPU mode)."""

    def __init__(self, replica_groups: list[list[int]]) -> None:
        self.rank_src_tgt_pairs: dict[int, list[tuple[int, int]]] = {}
        for group in replica_groups:
            ring = [(group[i], group[(i + 1) % len(group)]) for i in range(len(group))]
            for rank in group:
                self.rank_src_tgt_pairs[rank] = ring


class KernelPlaceholder:
    """What a kernel decorator returns: the Python kernel kept (``__wrapped__``), never run on a CPU."""

    def __init__(self, decorator: str, kernel: Callable) -> None:
        self._name = f"{decorator}({getattr(kernel, '__qualname__', kernel)!s})"
        self.__wrapped__ = kernel
        functools.update_wrapper(self, kernel)

    def __call__(self, *args, **kwargs):
        raise not_here(self._name)

    def __getitem__(self, grid):
        raise not_here(f"{self._name}[...]")


def kernel_decorator(name: str) -> Callable:
    """``@jit``, ``@jit(**options)`` and ``jit(**options)(kernel)``: applied at import, kernel never run."""

    def decorator(kernel=None, *args, **kwargs):
        if callable(kernel) and not args and not kwargs:
            return KernelPlaceholder(name, kernel)
        return lambda fn: KernelPlaceholder(name, fn)

    decorator.__qualname__ = name
    return decorator


MODULE_MARKERS = ("ModuleMarkerStart.forward_impl", "ModuleMarkerEnd.forward_impl")
MARKER_MODULE = "neuronx_distributed_inference.models.layer_boundary_marker"


def xla_hlo_call(function: Callable) -> Callable:
    """A decorator applied at import. Only NxDI's module markers (an identity on the values: a custom
    call that tells the compiler where a layer starts or ends) run on a CPU; every other HLO call raises."""
    name = f"xla_hlo_call({getattr(function, '__qualname__', function)!s})"
    marker = getattr(function, "__module__", "") == MARKER_MODULE and function.__qualname__ in MODULE_MARKERS

    @functools.wraps(function)
    def call(*args):
        if not marker:
            raise not_here(name)
        return args[0] if len(args) == 1 else tuple(args)

    return call


class SkipMode(Placeholder):
    """nkilib's DMA-skip options: NxD builds ``SkipMode(False, False)`` at import as a dataclass default.
    Constructing it gives a placeholder of that value (every use of it raises); nothing is computed."""

    def __call__(self, *args, **kwargs):
        shown = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
        return Placeholder(f"{self._shim_name}({shown})")


CPU_MODE: dict[str, dict[str, object]] = {
    "torch_neuronx.utils": {"get_platform_target": get_platform_target},
    "torch_neuronx.utils.utils": {"get_platform_target": get_platform_target},
    "neuronxcc.nki._pre_prod_kernels.collectives": {"CollectivesConfig": CollectivesConfig},
    "nki": {"jit": kernel_decorator("nki.jit")},
    "neuronxcc.nki": {"jit": kernel_decorator("neuronxcc.nki.jit")},
    "torch_neuronx.xla_impl.ops": {"nki_jit": kernel_decorator("torch_neuronx.xla_impl.ops.nki_jit"),
                                   "xla_hlo_call": xla_hlo_call},
    "torch_neuronx.xla_impl.base": {"xla_hlo_call": xla_hlo_call},
    # torch_xla's reduce-op names (public constants), used by NxD as dict keys and defaults
    "torch_xla.core.xla_model": {"REDUCE_SUM": "sum", "REDUCE_MIN": "min", "REDUCE_MAX": "max"},
    "nkilib.core.moe.moe_cte.moe_cte_utils": {"SkipMode": SkipMode("nkilib.core.moe.moe_cte.moe_cte_utils.SkipMode")},
}


def module_names() -> list[str]:
    return sorted(set(PLACEHOLDERS) | set(CPU_MODE))


def symbol_count() -> tuple[int, int]:
    """(placeholders, CPU-mode behaviours): the shimmed symbols."""
    return sum(len(v) for v in PLACEHOLDERS.values()), sum(len(v) for v in CPU_MODE.values())
