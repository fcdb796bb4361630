"""Trainium2: the user's three commands on the tiny model with a chat template: `compile`,
`generate --compiled-model-path --chat --compare-cpu`, `bench --compiled-model-path`.

Marked ``neuron``; skips cleanly where torch-neuronx is not installed. On a trn2 host:

    python -m pytest tests/neuron/test_trn2_cli.py -m neuron -v
"""

from __future__ import annotations

import json

import pytest

from qwen35_neuron.cli.main import main
from qwen35_neuron.runtime.benchmark import MODEL_PARTS, read_benchmark_report
from qwen35_neuron.testing.tiny import build_tiny_checkpoint, tiny_config_dict
from qwen35_neuron.testing.tokenizer import write_tiny_tokenizer

pytestmark = pytest.mark.neuron
pytest.importorskip("torch_neuronx", reason="needs a Trainium2 host with the Neuron SDK (torch-neuronx)")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("tiny-chat-ckpt")
    build_tiny_checkpoint(model_dir, tiny_config_dict(), seed=1)
    write_tiny_tokenizer(model_dir)
    out_dir = tmp_path_factory.mktemp("tiny-chat-compiled")
    code = main(["compile", "--model-path", str(model_dir), "--compiled-model-path", str(out_dir), "--tp-degree", "2",
                 "--logical-nc-config", "2", "--batch-size", "2", "--context-encoding-buckets", "16", "32",
                 "--seq-len", "64", "--torch-dtype", "float32"])
    assert code == 0
    return str(out_dir)


def test_chat_on_trn2_equals_the_cpu_runtime(compiled, capsys):
    code = main(["generate", "--compiled-model-path", compiled, "--chat", "--prompt", "Hi", "--prompt", "Hey you",
                 "--no-thinking", "--max-new-tokens", "8", "--compare-cpu", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["equal_to_cpu"] and len(result["text"]) == 2


def test_bench_on_trn2_writes_nxdi_report(compiled, tmp_path, capsys):
    path = tmp_path / "benchmark_report.json"
    code = main(["bench", "--compiled-model-path", compiled, "--batch-size", "2", "--input-length", "32",
                 "--max-new-tokens", "16", "--num-runs", "5", "--benchmark-report-path", str(path)])
    assert code == 0 and f"wrote {path}" in capsys.readouterr().out
    report = read_benchmark_report(path)
    assert all(report[part] is not None for part in MODEL_PARTS)
