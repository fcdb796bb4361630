"""The neuron layer's config, model and generation loop inside the real NxDI / NxD, in this process (one
rank, NxDI's ``to_cpu()``): what our retired SDK stand-ins used to check, against NxDI's own config
classes, model instance, wrapper and application. The reference is our CPU runtime, which the main
suite proves equal to transformers (tests/real_sdk/test_nxdi_text.py compares with transformers
directly).
"""

from __future__ import annotations

import dataclasses
import logging
import types

import pytest
import torch

from qwen35_neuron.checkpoint import load_text_state_dict
from qwen35_neuron.config import parse_model_config
from qwen35_neuron.config.neuron_settings import NeuronSettings, neuron_config_kwargs
from qwen35_neuron.model.model_ops import TORCH_OPS
from qwen35_neuron.model.rotary import MultimodalRotary
from qwen35_neuron.runtime.session import generate
from qwen35_neuron.testing.family_configs import QWEN35_35B
from sdk_cases import settings_kwargs
from sdk_harness import CallLog, cpu_engine, graphs
from tiny_models import PROMPTS

TINY = settings_kwargs(1)


@pytest.fixture(scope="module")
def config_35b():
    return parse_model_config(QWEN35_35B)


def test_config_reloads_from_neuron_config_json(nxdi, tiny_dir, tmp_path):
    from neuronx_distributed_inference.models.config import MoENeuronConfig

    settings = NeuronSettings(**TINY)
    config = nxdi.inference_config(tiny_dir, settings)
    config.save(tmp_path)
    again = nxdi.Qwen35MoeInferenceConfig.load(tmp_path)
    assert type(again.neuron_config).__name__ == "Qwen35MoeNeuronConfig"
    assert isinstance(again.neuron_config, MoENeuronConfig)
    assert again.text() == config.text() and again.settings() == settings
    assert again._name_or_path == config._name_or_path and again.num_local_experts == 8
    assert (again.output_attentions, again.output_hidden_states) == (False, False)  # what NxDI's forward reads


def test_foreign_load_hook_is_completed_by_our_parser(nxdi, tiny_dir):
    """vLLM-Neuron passes NxDI's load_pretrained_config(path): it lays transformers' view of config.json on the
    config (nested sub-configs, generic fields, _name_or_path); our parser then reads that directory."""
    from neuronx_distributed_inference.models.config import MoENeuronConfig
    from qwen35_neuron.errors import UnsupportedConfigError

    def load_pretrained_config(model_path_or_name):
        def load_config(config):
            config.__dict__.update(_name_or_path=model_path_or_name, text_config=types.SimpleNamespace(hidden_size=1),
                                   vision_config=types.SimpleNamespace(depth=2), max_length=20)
        return load_config

    nc = MoENeuronConfig(**neuron_config_kwargs(NeuronSettings(**TINY)))
    config = nxdi.Qwen35MoeInferenceConfig(nc, load_config=load_pretrained_config(tiny_dir))
    assert config.hidden_size == 64 and config.settings().tp_degree == 1
    assert not hasattr(config, "text_config") and not hasattr(config, "vision_config")
    assert config.text() == nxdi.inference_config(tiny_dir, NeuronSettings(**TINY)).text()
    with pytest.raises(UnsupportedConfigError, match="not a local directory with a config.json"):
        nxdi.Qwen35MoeInferenceConfig(nc, load_config=load_pretrained_config("Qwen/Qwen3.5-35B-A3B"))


def test_serving_overrides_reach_the_settings(nxdi, tiny_dir):
    """override_neuron_config {"qwen35": {...}} (vLLM's --additional-config) sets the run settings NxDI has no
    keyword for; unknown names are refused; NxDI defaults our model cannot take are replaced."""
    from qwen35_neuron.errors import UnsupportedConfigError

    vllm_like = dict(tp_degree=1, batch_size=2, ctx_batch_size=1, seq_len=64, max_context_length=64,
                     torch_dtype="float32", padding_side="right", enable_bucketing=True)
    nc = nxdi.Qwen35MoeNeuronConfig(**vllm_like, qwen35={"deltanet_kernel": "torch", "moe_block_size": 16})
    config = nxdi.Qwen35MoeInferenceConfig(nc, load_config=nxdi.load_qwen35_config(tiny_dir))
    settings = config.settings()
    assert (settings.deltanet_kernel, settings.moe_block_size, settings.batch_size) == ("torch", 16, 2)
    assert nc.moe_tp_degree == 1 and nc.token_generation_buckets == [64]
    with pytest.raises(UnsupportedConfigError, match=r"unknown field\(s\) \['tp_degree'\]"):
        nxdi.Qwen35MoeNeuronConfig(**vllm_like, qwen35={"tp_degree": 4})
    with pytest.raises(UnsupportedConfigError, match="deltanet_kernel 'fast'"):
        nxdi.Qwen35MoeNeuronConfig(**vllm_like, qwen35={"deltanet_kernel": "fast"})


def test_token_buckets_read_only_the_live_cache_and_keep_the_tokens(application, tiny_dir):
    """Token-generation graphs of buckets 16 / 32 / 64 attend to their first slots only: same tokens as the
    CPU runtime (whose decode reads the whole cache); NxDI's wrapper picks the bucket as the context grows."""
    from qwen35_neuron.neuron.generation import generate_direct

    app = application(tiny_dir, token_buckets=(16, 32, 64))
    log = CallLog(app)
    prompts = [list(p) for p in PROMPTS]
    ours = generate_direct(app, prompts, 12)
    assert ours.tokens == generate(cpu_engine(tiny_dir), prompts, 12, eos_token_ids=()).tokens
    widths = [width for tag, _, _, width, _ in log.close().calls if tag == "tkg"]
    assert widths[0] == 16 and widths[-1] == 32 and widths == sorted(widths)


def test_rows_reset_and_stay_isolated(application, tiny_dir):
    """A finished row idles with an all-zero mask (EOS), a new prompt restarts only its row, a row nobody
    asked for keeps its state bit for bit."""
    from qwen35_neuron.neuron.generation import generate_direct

    app = application(tiny_dir)
    generate_direct(app, [[9, 8, 7, 6, 5, 4, 3, 2, 1]] * 4, 5)  # fill all four rows
    _, tkg = graphs(app)
    row3 = [p.data[3].clone() for p in tkg.past_key_values]
    prompts = [list(p) for p in PROMPTS]
    eos = (170,)  # the second prompt emits 170 as its third token: that row idles from then on
    ours = generate_direct(app, prompts, 6, eos_token_ids=eos)
    reference = generate(cpu_engine(tiny_dir), prompts, 6, eos_token_ids=eos)
    assert ours.tokens == reference.tokens and len(ours.tokens[1]) == 2
    assert all(torch.equal(p.data[3], old) for p, old in zip(tkg.past_key_values, row3))


def test_bf16_keeps_the_fp32_contract(application, tiny_dir, nxdi):
    """bf16 through both of NxDI's casts - the model instance's (tracing) and to_cpu's ``.bfloat16()`` -
    keeps the recurrent state and the rotary frequencies in fp32."""
    app = application(tiny_dir, dtype="bfloat16")
    config = app.config
    instance = app.context_encoding_model.get_model_instance()  # NxDI's DecoderModelInstance
    instance.load_module()
    for module in (instance.module, *graphs(app)):
        kinds = [b.kind for b in module.state_layout]
        dtypes = [p.dtype for p in module.past_key_values]
        assert all(d == (torch.float32 if k == "recurrent_state" else torch.bfloat16) for k, d in zip(kinds, dtypes))
        assert module.rotary.inv_freq.dtype == torch.float32
        assert torch.equal(module.rotary.inv_freq, MultimodalRotary(config.text()).inv_freq)
        assert module.layers[0].linear_attn.in_proj_qkv.weight.dtype == torch.bfloat16


def test_state_dict_streams_the_same_conversion(nxdi, tiny_dir):
    from qwen35_neuron.neuron.model import Qwen35MoeForCausalLM

    config = nxdi.inference_config(tiny_dir, NeuronSettings(**TINY))
    streamed = Qwen35MoeForCausalLM.get_state_dict(tiny_dir, config)
    converted = Qwen35MoeForCausalLM.convert_hf_to_neuron_state_dict(load_text_state_dict(tiny_dir), config)
    assert streamed.keys() == converted.keys()
    assert all(torch.equal(streamed[k], converted[k]) for k in streamed)


class TwinKernels:
    """Stand-in for ``kernels.nki_ops.load_kernel``: each kernel is its twin; launches are recorded."""

    def __init__(self):
        from qwen35_neuron.model import attention_core, causal_conv, deltanet, gated_delta_rule as gdr
        from qwen35_neuron.model.router_logits import fp32_router_logits
        from qwen35_neuron.model.selected_experts import selected_experts

        self.twins = {
            "gdn_prefill": lambda *a: gdr.chunked_gated_delta_rule(*a, 8),
            "gdn_prefill_bf16": lambda *a: gdr.chunked_gated_delta_rule(*a, 8),
            "gdn_decode": gdr.recurrent_gated_delta_rule,
            "gdn_decode_fused": deltanet.gated_decode,
            "flash_attention_d256": lambda q, k, v, pos, scale, offset: attention_core.causal_gqa_attention(
                q, k, v, pos, scale),
            "causal_conv1d_cte": causal_conv.causal_conv1d,
            "causal_conv1d_tkg": causal_conv.causal_conv1d,
            # one program's partial sum [1, N, H] (the layout code adds the programs')
            "expert_decode": lambda x, w, ids, gate_up, down: selected_experts(x, w, ids.long(), gate_up,
                                                                               down).float()[None],
            "router_logits": fp32_router_logits,
        }
        self.launches: list[tuple[str, int]] = []

    def __call__(self, name):
        kernels = self

        class Launchable:
            def __getitem__(self, grid):
                kernels.launches.append((name, grid))
                return kernels.twins[name]
        return Launchable()


def test_our_kernels_run_through_the_kernels_layout_code(application, checkpoint_dirs, monkeypatch):
    """deltanet/attention/MoE kernels 'ours': every hot op is launched as kernel[lnc](...) through
    qwen35_neuron.kernels.nki_ops' layout code (padding head_dim 32 and 64 conv channels to 128), and
    the tokens still equal the CPU runtime (the launched kernels are the twins). Two compiled rows: NxDI
    runs every decode step at the compiled width, and the chosen-experts decode (expert_decode) serves
    steps with fewer routed pairs (2 rows x top-2) than experts (8)."""
    import qwen35_neuron.kernels.nki_ops as layouts
    from qwen35_neuron.neuron import device_ops
    from qwen35_neuron.neuron.generation import generate_direct

    kernels = TwinKernels()
    monkeypatch.setattr(layouts, "load_kernel", kernels)
    monkeypatch.setattr(device_ops, "_real_nki", lambda: True)
    app = application(checkpoint_dirs["default"], deltanet_kernel="ours", attention_kernel="ours", moe_kernel="ours",
                      lnc=2, batch_size=2)
    prompts = [list(p) for p in PROMPTS[:2]]
    reference = generate(cpu_engine(checkpoint_dirs["default"], batch_size=2), prompts, 4, eos_token_ids=())
    assert generate_direct(app, prompts, 4).tokens == reference.tokens
    launched = {name for name, _ in kernels.launches}
    # decode runs at gdn_tkg's boundary: the fused kernel (gates + gated RMSNorm folded in)
    assert launched == {"gdn_prefill", "gdn_decode_fused", "flash_attention_d256", "causal_conv1d_cte",
                        "causal_conv1d_tkg", "expert_decode", "router_logits"}
    assert {grid for _, grid in kernels.launches} == {2}


def test_kernel_table_choices(nxdi, config_35b, monkeypatch, caplog):
    from qwen35_neuron.neuron import device_ops

    torch_table = device_ops.neuron_ops(NeuronSettings(deltanet_kernel="torch", attention_kernel="torch",
                                                       moe_kernel="torch"), config_35b.text)
    assert all(getattr(torch_table, op) is getattr(TORCH_OPS, op) for op in device_ops.OPS)
    monkeypatch.setattr(device_ops, "_real_nki", lambda: False)
    with caplog.at_level(logging.WARNING, logger=device_ops.__name__):
        table = device_ops.neuron_ops(NeuronSettings(), config_35b.text)
    assert all(getattr(table, op) is getattr(TORCH_OPS, op) for op in device_ops.OPS)
    assert "the nki package of the Neuron SDK is not installed" in caplog.text and table.name == "neuron-lnc2"
    monkeypatch.setattr(device_ops, "_real_nki", lambda: True)
    wide = dataclasses.replace(config_35b.text, linear_key_head_dim=256, linear_value_head_dim=256)
    table = device_ops.neuron_ops(NeuronSettings(), wide)
    assert table.gdr_decode is TORCH_OPS.gdr_decode and table.attention is not TORCH_OPS.attention


def test_custom_compiler_args_get_the_lnc(nxdi, tiny_dir):
    from qwen35_neuron.neuron.model import Qwen35MoeForCausalLM

    app = Qwen35MoeForCausalLM(tiny_dir, nxdi.inference_config(tiny_dir, NeuronSettings(**{**TINY, "lnc": 2})))
    assert app.neuron_config.logical_nc_config == 2 and app.get_compiler_args() is None
    app.config = nxdi.inference_config(tiny_dir, NeuronSettings(**{**TINY, "lnc": 2, "compiler_args": "-O1"}))
    assert app.get_compiler_args() == "-O1 --lnc=2"


def test_nkilib_prefill_adapter_layout(nxdi):
    """gdn_cte works on [B*Hv, S, D] from zero state; the adapter's reshapes and GQA expansion must give
    the twin's result for fresh rows, and leave a row without real tokens unchanged."""
    from qwen35_neuron.model.gated_delta_rule import chunked_gated_delta_rule, recurrent_gated_delta_rule
    from qwen35_neuron.neuron.device_ops import _nkilib_prefill

    class GdnCte:  # gdn_cte's contract as read at nki-library e9ef98fc: zero initial state, output * scale
        def __getitem__(self, grid):
            def run(q, k, v, beta, gate, scale=1.0):
                zeros = torch.zeros(q.shape[0], 1, q.shape[2], v.shape[2])
                out, state = recurrent_gated_delta_rule(q[:, :, None], k[:, :, None], v[:, :, None], gate[:, :, None],
                                                        beta[:, :, None], zeros)
                assert scale == q.shape[-1] ** -0.5  # the twin applies the same scale itself
                return out[:, :, 0], state[:, 0]
            return run

    torch.manual_seed(0)
    batch, length, k_heads, heads, dim = 2, 6, 2, 4, 8
    q, k = torch.randn(batch, length, k_heads, dim), torch.randn(batch, length, k_heads, dim)
    v = torch.randn(batch, length, heads, dim)
    g, beta = -torch.rand(batch, length, heads), torch.rand(batch, length, heads)
    g[1], beta[1] = 0.0, 0.0  # row 1: no real tokens
    state = torch.zeros(batch, heads, dim, dim)
    state[1] = torch.randn(heads, dim, dim)  # a continuing row's state must pass through
    out, new = _nkilib_prefill(GdnCte(), 2)(q, k, v, g, beta, state, 4)
    ref_out, ref_state = chunked_gated_delta_rule(q, k, v, g, beta, state, 4)
    assert torch.allclose(out[0], ref_out[0], atol=1e-5) and torch.allclose(new, ref_state, atol=1e-5)


def test_nkilib_decode_adapter_layout(nxdi):
    """gdn_tkg works on [B*Hv, D] rows with raw gates; the adapter's reshapes and GQA expansion must give
    the gated-decode twin's result."""
    from qwen35_neuron.model.deltanet import gated_decode
    from qwen35_neuron.neuron.device_ops import _nkilib_decode

    class GdnTkg:  # gdn_tkg's contract per the 2.33 nki-library docs, built from the twin on single heads
        def __getitem__(self, grid):
            def run(q, k, v, b, a, a_log, dt_bias, z, norm_weight, state_in):
                outs, states = [], []
                for row in range(q.shape[0]):  # row = batch * num_v_heads + head
                    h, one = row % a_log.shape[0], slice(row, row + 1)
                    out, state = gated_decode(q[one, None, None], k[one, None, None], v[one, None, None],
                                              a[one, None, None], b[one, None, None], a_log[h:h + 1],
                                              dt_bias[h:h + 1], z[one, None, None], norm_weight,
                                              state_in[one, None], 1e-6)
                    outs.append(out[0, 0, 0])
                    states.append(state[0, 0])
                return torch.stack(outs), torch.stack(states)
            return run

    gen = torch.Generator().manual_seed(3)
    batch, k_heads, heads, dim = 2, 2, 4, 8
    q, k = (torch.randn(batch, 1, k_heads, dim, generator=gen) for _ in range(2))
    v, z = (torch.randn(batch, 1, heads, dim, generator=gen) for _ in range(2))
    a, b = (torch.randn(batch, 1, heads, generator=gen) for _ in range(2))
    a_log, dt_bias, weight = torch.rand(heads, generator=gen), torch.randn(heads, generator=gen), torch.rand(dim)
    state = torch.randn(batch, heads, dim, dim, generator=gen)
    got, got_state = _nkilib_decode(GdnTkg(), 2)(q, k, v, a, b, a_log, dt_bias, z, weight, state, 1e-6)
    want, want_state = gated_decode(q, k, v, a, b, a_log, dt_bias, z, weight, state, 1e-6)
    assert (got - want).abs().max() < 1e-5 and (got_state - want_state).abs().max() < 1e-5
