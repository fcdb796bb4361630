"""The trn2 commands on a CPU without the SDK: `compile --print-settings`, the one-line errors, the scripts
in compile_scripts/ as thin wrappers of the same commands. `generate` / `bench --compiled-model-path` on a
loaded application run inside the real NxDI in tests/real_sdk/test_nxdi_cli.py."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from qwen35_neuron.cli.main import main
from qwen35_neuron.testing.family_configs import QWEN35_35B

SCRIPTS = Path(__file__).resolve().parents[2] / "compile_scripts"


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def scripts(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return {name: importlib.import_module(name) for name in ("compile_text", "generate", "bench_trn2")}


@pytest.fixture
def config_dir_35b(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN35_35B))
    return str(tmp_path)


def test_scripts_are_the_commands_and_need_no_sdk_for_help(scripts, capsys):
    for name, flag in (("compile_text", "--deltanet-kernel"), ("generate", "--chat"),
                       ("bench_trn2", "--benchmark-report-path")):
        with pytest.raises(SystemExit) as done:
            scripts[name].main(["--help"])
        assert done.value.code == 0 and flag in capsys.readouterr().out


def test_print_settings_takes_nxdi_flag_names(config_dir_35b, capsys):
    code, out, _ = _run(capsys, "compile", "--model-path", config_dir_35b, "--print-settings", "--preset",
                        "trn2.48xlarge", "--tp-degree", "8", "--batch-size", "8", "--ctx-batch-size", "1",
                        "--context-encoding-buckets", "256", "1024", "--token-generation-buckets", "8192",
                        "--seq-len", "8192", "--logical-nc-config", "2", "--torch-dtype", "bfloat16")
    assert code == 0
    lines = out.splitlines()
    settings = json.loads(lines[0].split(": ", 1)[1])
    assert (settings["tp_degree"], settings["batch_size"], settings["ctx_batch_size"]) == (8, 8, 1)
    assert settings["context_buckets"] == [256, 1024] and settings["max_length"] == 8192
    keywords = json.loads(lines[1].split(": ", 1)[1])
    assert keywords["context_encoding_buckets"] == [256, 1024] and keywords["token_generation_buckets"] == [8192]
    assert keywords["seq_len"] == 8192 and keywords["logical_nc_config"] == 2
    code, out, _ = _run(capsys, "compile", "--model-path", config_dir_35b, "--print-settings",
                        "--token-generation-buckets", "4096", "1024")
    assert code == 0 and json.loads(out.splitlines()[1].split(": ", 1)[1])["token_generation_buckets"] == [1024, 4096]
    assert lines[2].startswith("roofline:") and "(fits)" in lines[2]


def test_print_settings_through_the_script_with_the_earlier_flag_names(scripts, config_dir_35b, capsys):
    argv = ["--model", config_dir_35b, "--print-settings", "--preset", "trn2.48xlarge", "--batch-size", "8",
            "--ctx-batch-size", "1", "--buckets", "256,1024"]
    assert scripts["compile_text"].main(argv) == 0
    settings = json.loads(capsys.readouterr().out.splitlines()[0].split(": ", 1)[1])
    assert (settings["tp_degree"], settings["context_buckets"]) == (8, [256, 1024])
    assert scripts["compile_text"].main(argv[:3] + ["--tp", "32"]) == 2  # 16 attention heads
    assert "not divisible by --tp-degree 32" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--token-generation-buckets", "1024", "2048"], "--token-generation-buckets (1024, 2048) must be lengths in 1..--seq-len whose largest is --seq-len (4096)"),
    (["--ctx-batch-size", "4", "--batch-size", "2"], "--ctx-batch-size 4 must lie in 1..--batch-size (2)"),
    (["--context-encoding-buckets", "8192"], "exceeds --seq-len 4096"),
    (["--context-encoding-buckets", "128", "x"], "--context-encoding-buckets takes integers"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--seq-len", "300000"], "--seq-len 300000 exceeds the model's max_position_embeddings 262144: lower --seq-len"),
])
def test_bad_settings_are_one_line_naming_the_flag(config_dir_35b, capsys, extra, message):
    code, _, err = _run(capsys, "compile", "--model-path", config_dir_35b, "--print-settings", *extra)
    assert code == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("argv", [
    ["compile", "--model-path", "{tiny}", "--compiled-model-path", "{out}", "--tp-degree", "2", "--seq-len", "512",
     "--context-encoding-buckets", "128"],
    ["generate", "--compiled-model-path", "{out}", "--input-ids", "1,2"],
    ["bench", "--compiled-model-path", "{out}"],
])
def test_without_the_sdk_each_trn2_command_is_one_error_line(capsys, tiny_dir, tmp_path, argv):
    if "torch_neuronx" in sys.modules:
        pytest.skip("an SDK (or the real-SDK tier's shims) is loaded")
    argv = [a.format(tiny=tiny_dir, out=tmp_path / "compiled") for a in argv]
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "needs the AWS Neuron SDK" in err and err.count("\n") == 1


def test_compile_checks_the_checkpoint_before_the_sdk(capsys, config_dir_35b, tmp_path):
    """A checkpoint without weights fails at the tensor gate, not after importing the SDK."""
    code, _, err = _run(capsys, "compile", "--model-path", config_dir_35b, "--compiled-model-path", str(tmp_path / "o"))
    assert code == 2 and "needs the AWS Neuron SDK" not in err and err.count("\n") == 1


def test_compile_checks_the_cache_length_before_the_checkpoint(capsys, config_dir_35b, tmp_path):
    """--seq-len past the model's positions is refused first (not after the tensor gate and the scan)."""
    code, _, err = _run(capsys, "compile", "--model-path", config_dir_35b, "--compiled-model-path", str(tmp_path / "o"),
                        "--seq-len", "300000")
    assert code == 2 and err == "error: --seq-len 300000 exceeds the model's max_position_embeddings 262144: " \
                                "lower --seq-len\n", err


@pytest.mark.parametrize("extra, message", [
    (["--input-ids", "1,250,2", "--image", "x.png", "--loop", "adapter"], "cannot carry images"),
    (["--input-ids", "1,2", "--do-sample"], "generation on Trainium2 is greedy here"),
    (["--input-ids", "1,2", "--vision-compiled", "towers"], "give at least one --image"),
    (["--chat", "--input-ids", "1,2"], "use --prompt, not --input-ids"),
])
def test_trn2_generate_mistakes_are_refused_before_loading(scripts, capsys, extra, message):
    assert scripts["generate"].main(["--compiled", "/nonexistent", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
