"""The trn2 scripts on a CPU: help and settings without the SDK, the bench loop on SDK stand-ins."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from nxdi_driver import TINY, NxdiDriver, build
from qwen35_neuron.testing.family_configs import QWEN35_35B

SCRIPTS = Path(__file__).resolve().parents[2] / "compile_scripts"


@pytest.fixture
def scripts(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return {name: importlib.import_module(name) for name in ("compile_text", "generate", "bench_trn2")}


def test_help_needs_no_sdk(scripts, capsys):
    for module in scripts.values():
        with pytest.raises(SystemExit) as done:
            module.main(["--help"])
        assert done.value.code == 0
    assert "--deltanet-kernel" in capsys.readouterr().out


def test_print_settings_with_overrides(scripts, tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps(QWEN35_35B))
    argv = ["--model", str(tmp_path), "--print-settings", "--preset", "trn2.48xlarge", "--batch-size", "8",
            "--ctx-batch-size", "1", "--buckets", "256,1024"]
    assert scripts["compile_text"].main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    settings = json.loads(lines[0].split(": ", 1)[1])
    assert (settings["tp_degree"], settings["batch_size"], settings["ctx_batch_size"]) == (8, 8, 1)
    assert settings["context_buckets"] == [256, 1024]
    assert json.loads(lines[1].split(": ", 1)[1])["context_encoding_buckets"] == [256, 1024]
    assert lines[2].startswith("roofline:") and "(fits)" in lines[2]
    assert scripts["compile_text"].main(argv[:3] + ["--tp", "32"]) == 2  # 16 attention heads


def test_compile_without_sdk_is_one_error_line(scripts, tiny_dir, tmp_path, capsys):
    if "torch_neuronx" in sys.modules:
        pytest.skip("an SDK (or stand-in) is loaded")
    assert scripts["compile_text"].main(["--model", tiny_dir, "--out", str(tmp_path), "--tp", "2"]) == 2
    assert "needs the AWS Neuron SDK" in capsys.readouterr().err


def test_bench_case_runs_the_direct_loop(fake_sdk_modules, scripts, tiny_dir):
    import qwen35_neuron.neuron as neuron

    _, module, _ = build(neuron, tiny_dir)
    driver = NxdiDriver(module, TINY["context_buckets"], TINY["max_length"])
    case = scripts["bench_trn2"].run_case(driver, batch=2, length=16, new_tokens=5, vocab=200, repeats=2, warmup=1,
                                          seed=0)
    assert (case["batch"], case["bucket"]) == (2, 16)
    assert case["ttft_ms"] > 0 and case["tpot_ms"] > 0 and case["tokens_per_s"] > 0
    assert driver.calls.count("cte16") == 3 and driver.calls.count("tkg") == 3 * 4
