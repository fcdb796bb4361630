"""vLLM-Neuron registration, on a CPU: the plugin's key rule, and registration into fake plugin tables."""

from __future__ import annotations

import copy
import logging
import sys
import types

import pytest

from qwen35_neuron.errors import Qwen35Error, UnsupportedConfigError
from qwen35_neuron.serving import (
    ARCHITECTURES,
    MODEL_CLASS_PATH,
    LazyModelClass,
    camel_to_kebab,
    nxdi_model_key,
    register,
    register_into,
)

# MODEL_TYPES keys of NxDI 0.9.17334 (utils/constants.py at the pinned commit).
NXDI_MODEL_TYPES_KEYS = {"gpt_oss", "llama", "llama4", "mllama", "mistral", "mixtral", "pixtral", "dbrx", "qwen2",
                         "qwen2_vl", "qwen3", "qwen3_moe", "gemma3", "qwen3_vl"}

PLUGIN_CASES = [
    ("LlamaForCausalLM", ("llama", "causal-lm")),
    ("MistralForCausalLM", ("mistral", "causal-lm")),
    ("MixtralForCausalLM", ("mixtral", "causal-lm")),
    ("DbrxForCausalLM", ("dbrx", "causal-lm")),
    ("Qwen2ForCausalLM", ("qwen2", "causal-lm")),
    ("Qwen3ForCausalLM", ("qwen3", "causal-lm")),
    ("Qwen3MoeForCausalLM", ("qwen3_moe", "causal-lm")),
    ("GptOssForCausalLM", ("gpt_oss", "causal-lm")),
    ("MllamaForConditionalGeneration", ("mllama", "causal-lm")),
    ("Llama4ForConditionalGeneration", ("llama4", "causal-lm")),
    ("LlavaForConditionalGeneration", ("pixtral", "causal-lm")),
    ("Qwen2VLForConditionalGeneration", ("qwen2_vl", "causal-lm")),
    ("Qwen3VLForConditionalGeneration", ("qwen3_vl", "causal-lm")),
    ("Gemma3ForConditionalGeneration", ("gemma3", "causal-lm")),
    ("NeuronLlamaForCausalLM", ("llama", "causal-lm")),
    ("NeuronQwen3MoeForCausalLM", ("qwen3_moe", "causal-lm")),
    ("Llama4ForImageEncoding", ("llama4", "image-encoding")),
]


@pytest.mark.parametrize("architecture,key", PLUGIN_CASES)
def test_key_rule_matches_plugin_cases(architecture, key):
    assert nxdi_model_key(architecture) == key
    assert key[0] in NXDI_MODEL_TYPES_KEYS


def test_key_rule_for_qwen35():
    assert nxdi_model_key("Qwen3_5MoeForConditionalGeneration") == ("qwen3_5moe", "causal-lm")
    assert nxdi_model_key("Qwen3_5MoeForCausalLM") == ("qwen3_5moe", "causal-lm")
    assert nxdi_model_key("Qwen3_5ForConditionalGeneration") == ("qwen3_5", "causal-lm")  # dense sibling
    assert "qwen3_5moe" not in NXDI_MODEL_TYPES_KEYS  # nothing of NxDI's is shadowed


def test_key_rule_edges():
    assert camel_to_kebab("CausalLM") == "causal-lm"
    assert camel_to_kebab("SequenceClassification") == "sequence-classification"
    assert nxdi_model_key("FooForBarForCausalLM") == ("foo", "bar-for-causal-lm")  # split at the first For
    with pytest.raises(UnsupportedConfigError, match="no 'For'"):
        nxdi_model_key("InternVLChatModel")


class FakeModel:
    """What the neuron layer's class offers the plugin: class methods and a constructor."""

    _STATE_DICT_MODEL_PREFIX = "model."

    @classmethod
    def get_config_cls(cls):
        return "config-cls"

    def __init__(self, model_path, config=None):
        self.model_path, self.config = model_path, config


def test_register_into_fake_tables():
    model_types = {"llama": {"causal-lm": object}}
    multimodal = ["MllamaForConditionalGeneration"]
    proxy = LazyModelClass()
    result = register_into(model_types, None, model_class=proxy)
    assert result.keys == [("qwen3_5moe", "causal-lm")] and not result.replaced
    assert model_types["qwen3_5moe"]["causal-lm"] is proxy
    assert model_types["llama"] == {"causal-lm": object}
    # idempotent: a second plugin load (another proxy, same target) changes nothing
    again = register_into(model_types, None)
    assert model_types["qwen3_5moe"]["causal-lm"] is proxy and not again.replaced
    # the multimodal list is only touched on request, in place
    mm = register_into(model_types, multimodal, model_class=proxy)
    assert multimodal == ["MllamaForConditionalGeneration", *ARCHITECTURES]
    assert mm.multimodal_added == list(ARCHITECTURES)
    register_into(model_types, multimodal, model_class=proxy)
    assert len(multimodal) == 3


def test_register_into_replaces_foreign_entry():
    model_types = {"qwen3_5moe": {"causal-lm": FakeModel}}
    result = register_into(model_types, None)
    assert result.replaced == [("qwen3_5moe", "causal-lm")]
    assert isinstance(model_types["qwen3_5moe"]["causal-lm"], LazyModelClass)
    assert "replaced" in result.describe()


def test_lazy_class_resolves_on_first_use(monkeypatch):
    proxy = LazyModelClass("qwen35_fake_neuron_model:FakeModel")
    with pytest.raises(Qwen35Error, match="cannot be imported"):
        proxy.get_config_cls()  # module absent: a clear error, but only when used
    module = types.ModuleType("qwen35_fake_neuron_model")
    module.FakeModel = FakeModel
    monkeypatch.setitem(sys.modules, "qwen35_fake_neuron_model", module)
    assert proxy.get_config_cls() == "config-cls"
    built = proxy("/models/q35", config="cfg")
    assert isinstance(built, FakeModel) and built.config == "cfg"
    assert proxy.resolve() is FakeModel
    assert proxy._STATE_DICT_MODEL_PREFIX == "model."  # single-underscore class attributes are forwarded
    assert copy.copy(proxy).target == proxy.target
    assert LazyModelClass().target == MODEL_CLASS_PATH
    with pytest.raises(ValueError):
        LazyModelClass("no_colon_here")


def _install_fake_stack(monkeypatch, *, with_multimodal_list=True):
    """Fake NxDI constants and vllm-neuron constants modules, as the plugin would import them."""
    model_types = {"qwen3_moe": {"causal-lm": object}}
    multimodal = ["LlavaForConditionalGeneration"]
    names = {
        "neuronx_distributed_inference": {}, "neuronx_distributed_inference.utils": {},
        "neuronx_distributed_inference.utils.constants": {"MODEL_TYPES": model_types},
        "vllm_neuron": {}, "vllm_neuron.worker": {},
        "vllm_neuron.worker.constants": {"NEURON_MULTI_MODAL_MODELS": multimodal} if with_multimodal_list else {},
    }
    for name, attrs in names.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    return model_types, multimodal


def test_register_with_fake_plugin(monkeypatch, caplog):
    model_types, multimodal = _install_fake_stack(monkeypatch)
    with caplog.at_level(logging.INFO, logger="vllm.plugins.qwen35_neuron"):
        register()
        register()
    entry = model_types["qwen3_5moe"]["causal-lm"]
    assert isinstance(entry, LazyModelClass) and entry.target == MODEL_CLASS_PATH
    dense = model_types["qwen3_5"]["causal-lm"]  # the dense family, served by its own class name
    assert isinstance(dense, LazyModelClass) and dense.target == "qwen35_neuron.neuron.model:Qwen35ForCausalLM"
    assert model_types["qwen3_moe"] == {"causal-lm": object}
    assert multimodal == ["LlavaForConditionalGeneration"]  # left alone: see the module docstring
    assert len(caplog.records) == 2 and "MODEL_TYPES['qwen3_5moe']['causal-lm']" in caplog.records[0].message


def test_register_without_stack_logs_one_line(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "neuronx_distributed_inference", None)  # import would fail
    monkeypatch.setitem(sys.modules, "vllm_neuron", None)
    with caplog.at_level(logging.INFO, logger="vllm.plugins.qwen35_neuron"):
        register()
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "neuronx_distributed_inference, vllm_neuron not installed" in caplog.records[0].message


def test_register_with_native_plugin_or_broken_stack_never_raises(monkeypatch, caplog):
    _install_fake_stack(monkeypatch, with_multimodal_list=False)
    with caplog.at_level(logging.INFO, logger="vllm.plugins.qwen35_neuron"):
        register()
    assert "no NxDI route" in caplog.records[-1].message
    model_types, _ = _install_fake_stack(monkeypatch)
    sys.modules["neuronx_distributed_inference.utils.constants"].MODEL_TYPES = {"qwen3_5moe": None}
    with caplog.at_level(logging.INFO, logger="vllm.plugins.qwen35_neuron"):
        register()  # MODEL_TYPES['qwen3_5moe'] is not a dict: the error is logged, not raised
    assert "skipped after an error" in caplog.records[-1].message


# ---- what vLLM's own tables get (the real vLLM 0.16 is exercised in tests/real_vllm) ----

class FakeModelRegistry:
    def __init__(self, models=None):
        self.models = dict(models or {})

    def register_model(self, architecture, cls):
        self.models[architecture] = cls


def test_vllm_architectures_registered_once_and_never_over_vllms_own():
    from qwen35_neuron.serving.vllm_arch import Qwen35MoeNxdiDeclaration, Qwen35MoeVllmConfigUpdate
    from qwen35_neuron.serving.vllm_plugin import register_vllm_architectures

    native = object()
    registry, config_map = FakeModelRegistry({"Qwen3_5MoeForCausalLM": native}), {}
    added = register_vllm_architectures(registry, config_map, Qwen35MoeNxdiDeclaration, Qwen35MoeVllmConfigUpdate,
                                        ARCHITECTURES)
    assert added == ["Qwen3_5MoeForConditionalGeneration"]  # a newer vLLM's own entry is left alone
    assert registry.models["Qwen3_5MoeForCausalLM"] is native
    assert config_map == {"Qwen3_5MoeForConditionalGeneration": Qwen35MoeVllmConfigUpdate}
    assert register_vllm_architectures(registry, config_map, Qwen35MoeNxdiDeclaration, Qwen35MoeVllmConfigUpdate,
                                       ARCHITECTURES) == []


def test_declaration_is_never_a_model_and_says_what_to_install():
    from qwen35_neuron.serving.vllm_arch import Qwen35MoeNxdiDeclaration

    with pytest.raises(Qwen35Error, match="vllm-neuron 0.5.0 through NxD Inference"):
        Qwen35MoeNxdiDeclaration(vllm_config=None)


def test_prefix_caching_is_turned_off_with_one_warning(caplog):
    from qwen35_neuron.serving.vllm_arch import Qwen35MoeVllmConfigUpdate

    config = types.SimpleNamespace(cache_config=types.SimpleNamespace(enable_prefix_caching=True))
    with caplog.at_level(logging.WARNING, logger="vllm.plugins.qwen35_neuron"):
        Qwen35MoeVllmConfigUpdate.verify_and_update_config(config)
        Qwen35MoeVllmConfigUpdate.verify_and_update_config(config)
    assert config.cache_config.enable_prefix_caching is False and len(caplog.records) == 1


def test_transformers_config_keeps_the_published_layout_with_top_level_views():
    """The classes registered under transformers 4.57 (the real registration runs in tests/real_vllm); the
    installed transformers 5 has its own qwen3_5_moe, so nothing is registered here."""
    from qwen35_neuron.serving.transformers_config import Qwen35MoeConfig, register_transformers_config
    from qwen35_neuron.testing.family_configs import QWEN35_35B

    config = Qwen35MoeConfig(**QWEN35_35B)
    assert (config.num_key_value_heads, config.head_dim, config.num_hidden_layers, config.vocab_size) == (2, 256, 40,
                                                                                                          248320)
    assert config.get_text_config() is config.text_config
    as_dict = config.to_dict()
    assert "head_dim" not in as_dict and as_dict["text_config"]["head_dim"] == 256  # views are not stored
    assert as_dict["text_config"]["rope_parameters"]["mrope_section"] == [11, 11, 10]
    config.head_dim = 128  # a flat override (vLLM's --hf-overrides) lands in the text config
    assert config.text_config.head_dim == 128
    assert register_transformers_config() == []


def test_transformers_config_of_the_dense_family():
    from qwen35_neuron.serving.transformers_config import Qwen35Config
    from qwen35_neuron.testing.family_configs import QWEN35_27B

    config = Qwen35Config(**QWEN35_27B)
    assert (config.model_type, config.num_key_value_heads, config.head_dim, config.num_hidden_layers) == (
        "qwen3_5", 4, 256, 64)
    assert type(config.text_config).__name__ == "Qwen35TextConfig"
