"""Step 1 of ``vllm serve DIR`` with the real vLLM 0.16.0: its own config code accepts Qwen3.5 MoE.

Nothing here calls our plugin directly: vLLM loads it through the ``vllm.general_plugins`` entry point
from ``EngineArgs.__post_init__``, before ``ModelConfig`` parses config.json.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch

from conftest import QWEN35_KNOWN_AT_START

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_serve_flags() -> list[str]:
    """The flags of the README's `vllm serve` command, as a shell would split them."""
    text = README.read_text()
    start = text.index("vllm serve /models/")
    command = text[start:text.index("```", start)].replace("\\\n", " ")
    words = shlex.split(command)
    return words[3:]  # after "vllm serve MODEL"


def model_config_summary(mc) -> dict:
    """The fields of vLLM's ModelConfig the NxDI route depends on (printed for the issue's record)."""
    hf = mc.hf_config
    return {"architecture": mc.architecture, "hf_config": type(hf).__name__, "model_type": hf.model_type,
            "num_key_value_heads": hf.num_key_value_heads, "head_dim": hf.head_dim,
            "head_size": mc.get_head_size(), "total_num_kv_heads": mc.get_total_num_kv_heads(),
            "num_attention_heads": mc.get_num_attention_heads(_Parallel(1)), "hidden_size": mc.get_hidden_size(),
            "num_layers": mc.get_total_num_hidden_layers(), "vocab_size": mc.get_vocab_size(),
            "dtype": str(mc.dtype), "max_model_len": mc.max_model_len, "uses_mrope": mc.uses_mrope,
            "is_hybrid": mc.is_hybrid, "is_multimodal_model": mc.is_multimodal_model}


class _Parallel:
    def __init__(self, tp: int) -> None:
        self.tensor_parallel_size = tp


def test_engine_args_build_the_35b_model_config(published_35b):
    """The published 35B config.json: vLLM's ModelConfig builds, with the loader's top-level fields."""
    from vllm.engine.arg_utils import EngineArgs

    assert not QWEN35_KNOWN_AT_START, "transformers 4.57 must not know qwen3_5_moe before the plugin runs"
    mc = EngineArgs(model=str(published_35b), max_model_len=4096, tensor_parallel_size=4,
                    skip_tokenizer_init=True).create_model_config()
    summary = model_config_summary(mc)
    print("vLLM ModelConfig for Qwen3.5-35B-A3B:", json.dumps(summary))
    assert summary == {
        "architecture": "Qwen3_5MoeForConditionalGeneration", "hf_config": "Qwen35MoeConfig",
        "model_type": "qwen3_5_moe", "num_key_value_heads": 2, "head_dim": 256, "head_size": 256,
        "total_num_kv_heads": 2, "num_attention_heads": 16, "hidden_size": 2048, "num_layers": 40,
        "vocab_size": 248320, "dtype": "torch.bfloat16", "max_model_len": 4096, "uses_mrope": True,
        "is_hybrid": False, "is_multimodal_model": False}
    text = mc.hf_config.get_text_config()
    assert text.rope_parameters["mrope_section"] == [11, 11, 10] and text.layer_types[3] == "full_attention"


def test_engine_args_build_the_dense_27b_model_config(published_27b):
    """The dense family (``qwen3_5``, 27B as published) parses the same way."""
    from vllm.engine.arg_utils import EngineArgs

    mc = EngineArgs(model=str(published_27b), max_model_len=4096, tensor_parallel_size=4,
                    skip_tokenizer_init=True).create_model_config()
    summary = model_config_summary(mc)
    assert (summary["architecture"], summary["hf_config"], summary["num_key_value_heads"], summary["head_dim"],
            summary["num_layers"], summary["hidden_size"]) == ("Qwen3_5ForConditionalGeneration", "Qwen35Config",
                                                               4, 256, 64, 5120)


def test_engine_args_build_the_tiny_checkpoint_model_config(tier_data):
    """The tiny checkpoint the loader tests serve (safetensors beside config.json; fp32)."""
    from vllm.engine.arg_utils import EngineArgs

    mc = EngineArgs(model=str(tier_data / "default"), max_model_len=64, skip_tokenizer_init=True,
                    dtype="float32").create_model_config()
    assert (mc.architecture, mc.hf_config.num_key_value_heads, mc.hf_config.head_dim) == (
        "Qwen3_5MoeForConditionalGeneration", 2, 32)
    assert mc.dtype == torch.float32 and mc.get_vocab_size() == 256


def test_the_readme_serve_flags_build_the_engine_config(published_35b, neuron_platform):
    """The README's `vllm serve` flags through vLLM's own CLI parser and engine config, on the Neuron
    platform: prefix caching ends up off without --no-enable-prefix-caching (our per-architecture hook),
    the Neuron platform's scheduler and block size apply, the override reaches additional_config."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = AsyncEngineArgs.add_cli_args(FlexibleArgumentParser())
    args = parser.parse_args(["--model", str(published_35b), "--skip-tokenizer-init", *readme_serve_flags()])
    config = AsyncEngineArgs.from_cli_args(args).create_engine_config()
    assert config.cache_config.enable_prefix_caching is False
    assert config.cache_config.block_size == 4096 and config.scheduler_config.enable_chunked_prefill is False
    assert config.scheduler_config.max_num_seqs == 4 and config.parallel_config.tensor_parallel_size == 4
    assert config.parallel_config.worker_cls == "vllm_neuron.worker.neuron_worker.NeuronWorker"
    override = config.additional_config["override_neuron_config"]
    assert override["qwen35"] == {"moe_backend": "ours", "deltanet_kernel": "ours", "attention_kernel": "ours"}
    assert override["context_encoding_buckets"] == [128, 512, 2048]


def test_vllm_refuses_to_run_the_model_itself(published_35b):
    """Without vllm-neuron's loader, vLLM would construct the registered class: a clear error, not a model."""
    from vllm.model_executor.models import ModelRegistry

    from qwen35_neuron.errors import Qwen35Error

    cls = ModelRegistry.models["Qwen3_5MoeForConditionalGeneration"].load_model_cls()
    with pytest.raises(Qwen35Error, match="vllm-neuron 0.5.0"):
        cls(vllm_config=None)
