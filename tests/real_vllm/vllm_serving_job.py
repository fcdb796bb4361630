"""One rank of ``vllm serve``'s model side, run in a fresh process by the real-SDK harness
(``tests/real_sdk/sdk_harness.run_ranks``, shims installed first): vLLM 0.16's engine config for the
checkpoint on vllm-neuron's platform, then vllm-neuron 0.5.0's own ``get_neuron_model``, then
vLLM-shaped steps through the module it returns.

The one stand-in: compiling and loading onto NeuronCores (``NeuronCausalLM._compile_and_load_model``:
``compile()`` traces with the closed compiler, ``load()`` needs the NEFFs and a device) is replaced by
NxDI's CPU mode, ``to_cpu()``, on the same application object the loader constructed with the config
it built. Everything before (engine args, plugin, config parsing, class lookup, neuron config with the
overrides, the config hook, the config hash) and after (the loader's forward: batch reorder by
``seq_ids``, the call into NxDI, on-device sampled tokens out of ``hidden_states``) is theirs.

The step inputs are built the way vllm-neuron's model runner builds them for continuous batching
(``_finalize_continuous_batching_inputs`` and ``get_nxd_sampling_params``, with vLLM's
``make_tensor_with_pad`` and NxDI's ``prepare_sampling_params``); the runner module itself is not
imported (it pulls in vLLM's structured-output and tokenizer stacks, which this tier does not install).
"""

from __future__ import annotations

import os
from typing import Any

import torch

ARCHITECTURE = "Qwen3_5MoeForConditionalGeneration"
MAX_MODEL_LEN = 64
TOP_K_LIMIT = 256  # NeuronxDistributedModelRunner._MAX_NEURON_SAMPLING_TOP_K


def engine_config(model_dir: str, max_num_seqs: int, override: dict) -> Any:
    """``vllm serve MODEL --max-num-seqs N --max-model-len 64 --dtype float32 --additional-config ...`` on
    the Neuron platform (what vllm-neuron's platform plugin selects on a trn2 host)."""
    import vllm.platforms
    from vllm_neuron.platform import NeuronPlatform

    vllm.platforms._current_platform = NeuronPlatform()  # before any vLLM config module binds it
    NeuronPlatform.pre_register_and_update()
    from vllm.engine.arg_utils import EngineArgs

    return EngineArgs(model=model_dir, max_model_len=MAX_MODEL_LEN, max_num_seqs=max_num_seqs, dtype="float32",
                      tensor_parallel_size=1, skip_tokenizer_init=True,
                      additional_config={"override_neuron_config": override}).create_engine_config()


SHIPPED_COMPILE_AND_LOAD = None  # vllm-neuron's own method, kept when the job swaps in the CPU stand-in


def cpu_mode_compile_and_load(self, model_path, neuronx_model_cls, config, compiled_path) -> None:
    """Stands in for vllm-neuron's ``_compile_and_load_model`` (compile + load onto NeuronCores)."""
    self.model = neuronx_model_cls(model_path, config)
    self.model.to_cpu()
    os.environ.pop("WORLD_SIZE", None)  # to_cpu started the gloo group; a second start would fail


def sampling_rows(requests: list[dict], max_num_seqs: int, global_topk: int) -> torch.Tensor:
    """``get_nxd_sampling_params``: one (top_k, top_p, temperature) row per request, greedy as top_k 1."""
    from neuronx_distributed_inference.modules.generation.sampling import prepare_sampling_params

    max_topk = min(global_topk, TOP_K_LIMIT)
    top_k, top_p, temperature = [1] * max_num_seqs, [1.0] * max_num_seqs, [1.0] * max_num_seqs
    for index, request in enumerate(requests):
        top_k[index] = request["top_k"] if 0 < request["top_k"] < max_topk else max_topk
        top_p[index], temperature[index] = request["top_p"], request["temperature"]
        if request["temperature"] == 0.0:
            top_k[index], temperature[index] = 1, 1.0
    return prepare_sampling_params(batch_size=max_num_seqs, top_k=top_k, top_p=top_p, temperature=temperature)


def step_inputs(requests: list[dict], prefill: bool, max_num_seqs: int, global_topk: int) -> dict:
    """``_finalize_continuous_batching_inputs`` for a step of only prefills or only decodes."""
    from vllm.utils.torch_utils import make_tensor_with_pad

    if prefill:
        tokens = [r["prompt"] for r in requests]
        positions = [list(range(len(r["prompt"]))) for r in requests]
        full = [len(r["prompt"]) for r in requests]
        computed: list[int] = []
    else:
        tokens = [[r["output"][-1]] for r in requests]
        positions = [[len(r["prompt"]) + len(r["output"]) - 1] for r in requests]
        full = [p[0] + 1 for p in positions]
        computed = [p[0] for p in positions]
    width = max(map(len, tokens))
    sampling = sampling_rows(requests, max_num_seqs, global_topk)[: len(requests)]
    return dict(
        input_ids=make_tensor_with_pad(tokens, pad=0, max_len=width, dtype=torch.long, device="cpu"),
        position_ids=make_tensor_with_pad(positions, pad=0, max_len=width, dtype=torch.long, device="cpu"),
        input_block_ids=torch.tensor([r["slot"] for r in requests], dtype=torch.long),
        slot_mapping=(make_tensor_with_pad([], pad=-1, max_len=MAX_MODEL_LEN, dtype=torch.long, device="cpu")
                      if prefill else torch.tensor([], dtype=torch.long)),
        block_tables=torch.tensor([], dtype=torch.long),
        full_context_lens=torch.tensor(full, dtype=torch.long).reshape(-1, 1),
        computed_context_lens=torch.tensor(computed, dtype=torch.long).reshape(-1, 1),
        sampling_params=sampling, adapter_ids=None, prefill_completion_state=None)


def serve(model, requests: list[dict], new_tokens: int, max_num_seqs: int) -> list[list[int]]:
    """One prefill step for every request, then decode steps of all of them, as the runner schedules them;
    the loader's module is called the way ``_execute_model_for_text`` calls it."""
    free_slots = set(range(max_num_seqs))
    for request in requests:
        request["slot"], request["output"] = free_slots.pop(), []
    global_topk = model.neuron_config.on_device_sampling_config.global_topk
    for step in range(new_tokens):
        hidden = model(**step_inputs(requests, step == 0, max_num_seqs, global_topk))
        sampled = model.sample(hidden).sampled_token_ids  # [B, 1]
        for request, token in zip(requests, sampled[:, 0].tolist()):
            request["output"].append(int(token))
    return [r["output"] for r in requests]


def vllm_serving_job(model_dir: str, prompts: list[list[int]], new_tokens: int, max_num_seqs: int,
                     override: dict, compiled_dir: str) -> dict:
    config = engine_config(model_dir, max_num_seqs, override)
    from vllm_neuron.worker import neuronx_distributed_model_loader as loader

    from vllm.config.vllm import set_current_vllm_config

    picked = loader._get_neuron_model_cls(config.model_config.hf_config.architectures[0])
    global SHIPPED_COMPILE_AND_LOAD
    SHIPPED_COMPILE_AND_LOAD = loader.NeuronCausalLM._compile_and_load_model
    loader.NeuronCausalLM._compile_and_load_model = cpu_mode_compile_and_load
    with set_current_vllm_config(config):  # as the runner's load_model() calls it
        model = loader.get_neuron_model(config.model_config, config.cache_config, config.parallel_config,
                                        config.scheduler_config, None, config.speculative_config,
                                        config.additional_config)
    model.is_reorder_needed = not (config.cache_config.enable_prefix_caching
                                   or config.scheduler_config.enable_chunked_prefill)  # as load_model() sets it
    app = model.model
    nc = app.config.neuron_config
    sampling = nc.on_device_sampling_config
    requests = [{"prompt": list(p), "top_k": 0, "top_p": 1.0, "temperature": 0.0} for p in prompts]
    resolved = picked.resolve() if hasattr(picked, "resolve") else picked
    dense = loader._get_neuron_model_cls("Qwen3_5ForConditionalGeneration").resolve()
    return {
        "picked": repr(picked), "picked_class": f"{resolved.__module__}.{resolved.__qualname__}",
        "dense_picked_class": f"{dense.__module__}.{dense.__qualname__}",
        "loader_module": type(model).__name__, "application": type(app).__name__,
        "config_class": type(app.config).__name__, "neuron_config_class": type(nc).__name__,
        "settings": app.config.settings(), "text": app.config.text(),
        "sampling": {"dynamic": sampling.dynamic, "do_sample": sampling.do_sample, "global_topk": sampling.global_topk},
        "head_dim": model.head_dim, "num_key_value_heads": model.num_key_value_heads,
        "hash_input": app.config.to_json_string(),
        "tokens": serve(model, requests, new_tokens, max_num_seqs),
        "sampled_tokens": serve_sampled(model, prompts, new_tokens, max_num_seqs),
        "stops": where_the_chain_stops(model, model_dir, compiled_dir),
        "refused": refused_modes(model_dir),
    }


SAMPLED_REQUEST = {"top_k": 3, "top_p": 1.0, "temperature": 1.0}  # the second request's sampling parameters


def serve_sampled(model, prompts: list[list[int]], new_tokens: int, max_num_seqs: int) -> list[list[int]]:
    """The same prompts again, the first greedy (temperature 0) and the second sampled with
    ``SAMPLED_REQUEST``: each request's own parameters must reach NxDI's dynamic sampler (seeded)."""
    torch.manual_seed(0)
    requests = [{"prompt": list(prompts[0]), "top_k": 0, "top_p": 1.0, "temperature": 0.0},
                {"prompt": list(prompts[1]), **SAMPLED_REQUEST}]
    return serve(model, requests, new_tokens, max_num_seqs)


def refused_modes(model_dir: str) -> dict:
    """Neuron configs asking for modes our state layout cannot serve (what vllm-neuron builds with prefix
    caching on): the real NxDI config classes with ours, and the one error each gives."""
    from qwen35_neuron.errors import UnsupportedConfigError
    from qwen35_neuron.neuron.config import Qwen35MoeInferenceConfig, Qwen35MoeNeuronConfig, load_qwen35_config

    base = dict(tp_degree=1, batch_size=2, seq_len=MAX_MODEL_LEN, torch_dtype="float32", on_cpu=True)
    result = {}
    for name, flags in {"prefix_caching": {"is_prefix_caching": True, "is_block_kv_layout": True},
                        "block_kv_layout": {"is_block_kv_layout": True}}.items():
        try:
            Qwen35MoeInferenceConfig(Qwen35MoeNeuronConfig(**base, **flags), load_config=load_qwen35_config(model_dir))
            result[name] = "accepted"
        except UnsupportedConfigError as err:
            result[name] = str(err)
    return result


def where_the_chain_stops(model, model_dir: str, compiled_dir: str) -> dict:
    """The two steps a CPU cannot take, each through vllm-neuron's own method, with the error it meets.

    ``compile``: ``_compile_and_load_model`` as vllm-neuron ships it (NxDI's compile traces each bucket
    with the closed compiler). ``restart``: with ``NEURON_COMPILED_ARTIFACTS`` set, ``_load_compiled_model``
    rebuilds the application from the saved neuron_config.json (our config classes; vLLM's overrides are
    not used) and calls ``load()``, which needs the compiled graphs and NeuronCores.
    """
    from vllm_neuron.worker import neuronx_distributed_model_loader as loader

    from qwen35_neuron.neuron.model import Qwen35MoeForCausalLM

    app = model.model
    result = {}
    fresh = loader.NeuronCausalLM.__new__(loader.NeuronCausalLM)
    torch.nn.Module.__init__(fresh)
    try:
        SHIPPED_COMPILE_AND_LOAD(fresh, model_dir, Qwen35MoeForCausalLM, app.config, compiled_dir + "-compile")
        result["compile"] = "compiled"
    except Exception as err:  # noqa: BLE001 - the error is the finding
        result["compile"] = f"{type(err).__name__}: {str(err).splitlines()[0]} (at {_sdk_frame(err)})"
    app.config.save(compiled_dir)
    restarted = loader.NeuronCausalLM.__new__(loader.NeuronCausalLM)
    torch.nn.Module.__init__(restarted)
    os.environ["NEURON_COMPILED_ARTIFACTS"] = compiled_dir
    try:
        restarted._load_compiled_model(loader.NeuronCausalLM._get_compiled_model_path(restarted, model_dir, "h"),
                                       Qwen35MoeForCausalLM, {"override_neuron_config": {"qwen35": {}}})
        result["restart"] = "loaded"
    except Exception as err:  # noqa: BLE001
        result["restart"] = f"{type(err).__name__}: {str(err).splitlines()[0]} (at {_sdk_frame(err)})"
    finally:
        del os.environ["NEURON_COMPILED_ARTIFACTS"]
    reloaded = getattr(restarted, "model", None)
    result["restart_config"] = None if reloaded is None else (type(reloaded.config).__name__, reloaded.config.settings())
    return result


def _sdk_frame(err: BaseException) -> str:
    """The innermost NxDI / NxD frame the error passed: where the SDK's Python stopped."""
    import traceback

    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if "/neuronx_distributed_inference/" in f.filename or "/neuronx_distributed/" in f.filename]
    if not frames:
        return "outside the SDK"
    frame = frames[-1]
    module = frame.filename.split("/src/", 1)[-1].removesuffix(".py").replace("/", ".")
    return f"{module}.{frame.name}"
