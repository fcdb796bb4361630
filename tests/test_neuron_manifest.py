"""The neuron layer may only use Neuron-SDK symbols and keywords that exist at the pinned release.

The first test guards the real ``qwen35_neuron/neuron`` sources (it passes with zero files today and
says so); the rest test the checker itself on small synthetic sources, so a checker that silently
accepts everything would fail here.
"""

from __future__ import annotations

import json
import textwrap
import warnings

import pytest

from qwen35_neuron.analysis.manifest_check import (
    DEFAULT_MANIFEST,
    DEFAULT_ROOT,
    check_source,
    check_tree,
    load_manifest,
    main,
)

NXDI = "neuronx_distributed_inference"


@pytest.fixture(scope="module")
def manifest():
    return load_manifest()


def codes(source: str, manifest) -> list[str]:
    findings, _ = check_source(textwrap.dedent(source), manifest)
    return [f.code for f in findings]


def test_real_neuron_layer_matches_manifest(manifest):
    report = check_tree(DEFAULT_ROOT, manifest)
    assert len(report.files) >= 0
    if not report.files:
        warnings.warn(f"no .py files under {DEFAULT_ROOT} yet: the manifest check ran on nothing")
    assert report.ok, report.format()


def test_manifest_is_well_formed(manifest):
    raw = json.loads(DEFAULT_MANIFEST.read_text())
    for package in ("neuronx-distributed-inference", "neuronx-distributed", "torch-neuronx", "neuronx-cc", "nki"):
        assert raw["pinned"][package], package
    assert raw["pinned"]["neuronx-distributed-inference"] == "0.9.17334"
    for name, spec in manifest.symbols.items():
        assert spec.kind in ("class", "function", "constant", "method"), name
        assert all(isinstance(p, str) and p for p in spec.params), name
        if spec.kind == "method":
            assert name.rsplit(".", 1)[0] in manifest.symbols, f"{name}: owner class missing"
    for alias, target in manifest.aliases.items():
        assert target in manifest.symbols, alias
    # the symbols the neuron layer is built from are all there
    for needed in (f"{NXDI}.models.config.MoENeuronConfig", f"{NXDI}.models.model_base.NeuronBaseForCausalLM",
                   f"{NXDI}.modules.moe_v2.initialize_moe_module", f"{NXDI}.utils.constants.MODEL_TYPES",
                   "neuronx_distributed.parallel_layers.layers.RowParallelLinear", "torch_neuronx.trace", "nki.jit"):
        assert needed in manifest.symbols, needed


def test_known_calls_pass(manifest):
    source = f"""
        from neuronx_distributed.parallel_layers.layers import ColumnParallelLinear, RowParallelLinear
        from {NXDI}.models.config import MoENeuronConfig, OnDeviceSamplingConfig
        from {NXDI}.modules.moe_v2 import initialize_moe_module

        def build(config):
            up = ColumnParallelLinear(2048, 512, bias=False, gather_output=False, dtype=None)
            down = RowParallelLinear(512, 2048, bias=False, input_is_parallel=True, reduce_output=True)
            nc = MoENeuronConfig(tp_degree=4, moe_tp_degree=4, logical_nc_config=2, router_dtype="float32",
                                 on_device_sampling_config=OnDeviceSamplingConfig(top_k=1),
                                 blockwise_matmul_config={{"block_size": 512, "use_torch_block_wise": True}})
            return up, down, nc, initialize_moe_module(config, init_tkg_module=False)
    """
    findings, refs = check_source(textwrap.dedent(source), manifest)
    assert findings == []
    assert refs == 5  # five imported names checked


def test_unknown_symbol_fails(manifest):
    assert codes("from neuronx_distributed.parallel_layers.layers import ColumnParallelLinearX\n",
                 manifest) == ["unknown-import"]
    assert codes("import neuronx_distributed.parallel_layers.layers as L\nL.NoSuchLayer(1, 2)\n",
                 manifest) == ["unknown-symbol"]
    assert codes(f"from {NXDI}.models.config import InferenceConfig\nInferenceConfig.no_such_method()\n",
                 manifest) == ["unknown-symbol"]
    # neuronxcc.nki is the old kernel API the design forbids: not in the manifest at all
    assert codes("import neuronxcc.nki.language as nl\n", manifest) == ["unknown-import"]
    assert codes(f"from {NXDI}.models.config import *\n", manifest) == ["star-import"]


def test_unknown_kwarg_fails(manifest):
    found, _ = check_source(textwrap.dedent(f"""
        from {NXDI}.models.config import MoENeuronConfig
        MoENeuronConfig(tp_degree=8, normalize_top_k_affinities=True)
    """), manifest)
    assert [f.code for f in found] == ["unknown-kwarg"]
    assert "normalize_top_k_affinities" in found[0].message and found[0].line == 3
    assert codes("from neuronx_distributed.parallel_layers.layers import RowParallelLinear\n"
                 "RowParallelLinear(4, 4, gather_output=False)\n", manifest) == ["unknown-kwarg"]
    assert codes(f"from {NXDI}.models.config import MoENeuronConfig\n"
                 "MoENeuronConfig(router_config={'act_fn': 'softmax', 'dtyp': 'float32'})\n",
                 manifest) == ["unknown-dict-key"]
    assert codes("from neuronx_distributed.parallel_layers.mappings import reduce_from_tensor_model_parallel_region"
                 " as ar\nar(1, 2, 3)\n", manifest) == ["too-many-positional"]


def test_aliased_and_function_level_imports_are_resolved(manifest):
    # module alias + attribute call, inside a function: the canonical name appears in the message
    found, refs = check_source(textwrap.dedent("""
        def make():
            from neuronx_distributed.parallel_layers import layers as nxd_layers
            ok = nxd_layers.ColumnParallelLinear(8, 8, gather_output=False)
            return nxd_layers.ColumnParallelLinear(8, 8, gather_outputs=False), ok
    """), manifest)
    assert [f.code for f in found] == ["unknown-kwarg"]
    assert "neuronx_distributed.parallel_layers.layers.ColumnParallelLinear()" in found[0].message
    assert refs == 3
    # package re-export resolved through the manifest's aliases; a plain `import a.b` binds `a`
    assert codes("from neuronx_distributed.parallel_layers import ColumnParallelLinear as CPL\n"
                 "CPL(8, 8, tile_cc=True)\n", manifest) == ["unknown-kwarg"]
    assert codes("import neuronx_distributed.parallel_layers.parallel_state\n"
                 "neuronx_distributed.parallel_layers.parallel_state.get_tensor_model_parallel_size()\n",
                 manifest) == []
    # a simple assignment keeps the alias
    assert codes("import nki\njit = nki.jit\njit(mode='trace', target='trn2')\n", manifest) == []
    assert codes("import torch_neuronx as tnx\ntnx.trace(f, (x,), compiler_args='-O1', aliases={})\n",
                 manifest) == ["unknown-kwarg"]
    # names that are not SDK names are ignored, including a local shadowing a module name
    assert codes("import torch\ntorch.nn.Linear(2, 2, bogus=1)\n", manifest) == []


def test_override_signatures_are_checked(manifest):
    source = f"""
        from {NXDI}.models.model_base import NeuronBaseForCausalLM, NeuronBaseModel

        class Model(NeuronBaseModel):
            def setup_attr_for_model(self, config): ...
            def init_model(self, cfg): ...
            def forward(self, input_ids, attention_mask, position_ids, seq_ids, sampling_params): ...

        class App(NeuronBaseForCausalLM):
            _model_cls = Model
            def convert_hf_to_neuron_state_dict(state_dict, config): ...
            @classmethod
            def get_config_cls(cls): ...

        class Sub(App):
            @staticmethod
            def load_hf_model(model_path, revision): ...
    """
    found, _ = check_source(textwrap.dedent(source), manifest)
    messages = {f.message.split(":")[0]: f for f in found}
    assert {f.code for f in found} == {"bad-override"}
    assert set(messages) == {
        "Model.init_model overrides neuronx_distributed_inference.models.model_base.NeuronBaseModel.init_model",
        "App.convert_hf_to_neuron_state_dict overrides "
        "neuronx_distributed_inference.models.model_base.NeuronBaseForCausalLM.convert_hf_to_neuron_state_dict",
        "Sub.load_hf_model overrides "
        "neuronx_distributed_inference.models.model_base.NeuronBaseForCausalLM.load_hf_model",
    }, [f.format() for f in found]


def test_check_tree_and_cli_report_files(tmp_path, manifest, capsys):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "good.py").write_text("import nki\n@nki.jit\ndef k(a):\n    return a\n")
    (tmp_path / "pkg" / "bad.py").write_text("from neuronx_distributed.parallel_layers.layers import Nope\n")
    report = check_tree(tmp_path, manifest)
    assert len(report.files) == 2 and not report.ok
    assert [f.code for f in report.findings] == ["unknown-import"]
    assert main([str(tmp_path)]) == 1
    assert "2 file(s)" in capsys.readouterr().out
    (tmp_path / "pkg" / "bad.py").unlink()
    assert main([str(tmp_path)]) == 0


def test_manifest_agrees_with_the_fetched_sdk_sources(manifest):
    """Every NxDI / NxD symbol of the manifest exists in the fetched source with that kind, binding and
    keywords (the manifest was read by hand; this holds it to the source)."""
    from qwen35_neuron.analysis.manifest_source import check_against_source, fetched_package_roots
    from qwen35_neuron.sdk_sources import NXD, NXDI, missing_sources_line

    roots = fetched_package_roots()
    if roots is None:
        pytest.skip(missing_sources_line("manifest vs SDK source", [NXDI, NXD]))
    checked, findings = check_against_source(manifest, roots)
    assert checked >= 170
    assert findings == [], "\n".join(f.format() for f in findings)


SYNTHETIC_SDK = {
    "__init__.py": "from .config import Config\n",
    "config.py": textwrap.dedent('''
        from .helpers import read_lnc

        class Base:
            def __init__(self, **kwargs):
                self.batch = kwargs.pop("batch_size", 1)
                self.lnc = read_lnc(**kwargs)

        class Config(Base):
            def __init__(self, glu=True, **kwargs):
                self.extra = self._pick(kwargs)
                super().__init__(**kwargs)

            def _pick(self, options):
                return options.get("picked")

            @staticmethod
            def build(name, size=1):
                return name

        LIMIT = 4
    '''),
    "helpers.py": "def read_lnc(**kwargs):\n    return kwargs.pop('logical_nc_config', 1)\n",
}


def test_source_check_finds_what_the_manifest_gets_wrong(tmp_path):
    from qwen35_neuron.analysis.manifest_source import check_against_source

    package = tmp_path / NXDI
    package.mkdir()
    for name, text in SYNTHETIC_SDK.items():
        (package / name).write_text(text)
    good = {f"{NXDI}.Config": {"kind": "class", "params": ["glu", "batch_size", "picked", "logical_nc_config"],
                               "members": ["build", "_pick"]},
            f"{NXDI}.config.Config.build": {"kind": "method", "binding": "static", "params": ["name", "size"]},
            f"{NXDI}.config.LIMIT": {"kind": "constant"}}
    bad = {f"{NXDI}.config.Config": {"kind": "class", "params": ["batch_size", "typo_size"], "members": ["gone"]},
           f"{NXDI}.config.Config.build": {"kind": "method", "binding": "instance", "params": ["name"]},
           f"{NXDI}.config.Base.build": {"kind": "method", "binding": "static", "params": ["name"]},
           f"{NXDI}.config.read_lnc": {"kind": "class", "params": []},
           f"{NXDI}.config.MISSING": {"kind": "constant"}}
    roots = {NXDI: package}
    for symbols, expected in ((good, []), (bad, ["source-binding", "source-kind", "source-missing", "source-missing",
                                                 "source-params", "source-members"])):
        path = tmp_path / "manifest.json"
        path.write_text(json.dumps({"pinned": {}, "modules": [], "aliases": {}, "symbols": symbols}))
        checked, findings = check_against_source(load_manifest(path), roots)
        assert checked == len(symbols)
        assert sorted(f.code for f in findings) == sorted(expected), [f.format() for f in findings]
