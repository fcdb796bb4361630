"""The real neuron layer uses only SDK symbols and keywords that exist at the pinned release."""

from __future__ import annotations

from pathlib import Path

from qwen35_neuron.analysis.manifest_check import DEFAULT_ROOT, check_tree, load_manifest

OURS = ("__init__.py", "config.py", "generation.py", "device_ops.py", "model.py", "nxd_moe.py", "provider.py")


def test_neuron_layer_passes_the_manifest_check():
    report = check_tree(DEFAULT_ROOT, load_manifest())
    names = {Path(f).name for f in report.files}
    assert set(OURS) <= names
    assert report.references >= 25  # the checker really saw our SDK uses
    assert report.ok, report.format()


def test_manifest_lists_the_sharding_marker_we_rely_on():
    symbols = load_manifest().symbols
    assert symbols["neuronx_distributed.parallel_layers.layers.BaseParallelLinear"].kind == "class"
    spec = symbols["neuronx_distributed.parallel_layers.utils.set_tensor_model_parallel_attributes"]
    assert spec.params == ("tensor", "is_parallel", "dim", "stride", "num_partitions", "rank_ordering")
