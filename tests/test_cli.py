"""The ``qwen35-neuron`` command line: demo, generate (--json, batch, backends), inspect, and one-line
errors with a non-zero exit for every bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qwen35_neuron.cli.main import main
from qwen35_neuron.runtime.session import generate
from tiny_models import PROMPTS, make_engine


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_passes(capsys):
    code, out, _ = _run(capsys, "demo")
    assert code == 0
    assert "RESULT: tokens match" in out
    assert out.count("match: True") == 4 and "match: False" not in out  # 2 text rows, 2 image rows


def test_generate_json_batch_matches_runtime(capsys, tiny_dir):
    code, out, _ = _run(capsys, "generate", "--model", tiny_dir, "--input-ids", "11,42,7,99,3",
                        "--input-ids", "240,4,66", "--max-new-tokens", "6", "--json")
    assert code == 0
    tokens = json.loads(out)["tokens"]
    expected = generate(make_engine(tiny_dir), [list(PROMPTS[0]), list(PROMPTS[2])], 6).tokens
    assert tokens == expected


def test_generate_simulated_tp_equals_dense(capsys, tiny_dir):
    args = ["generate", "--model", tiny_dir, "--input-ids", "11,42,7", "--max-new-tokens", "5", "--json"]
    dense = _run(capsys, *args)[1]
    sharded = _run(capsys, *args, "--backend", "simulated-tp", "--tp", "2")[1]
    assert json.loads(dense) == json.loads(sharded)


def test_inspect_ok_and_failing(capsys, tiny_dir, tmp_path):
    code, out, _ = _run(capsys, "inspect", "--model", tiny_dir)
    assert code == 0 and "OK" in out
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["text_config"]["num_experts"] = 16
    (broken / "config.json").write_text(json.dumps(config))
    code, out, _ = _run(capsys, "inspect", "--model", str(broken))
    assert code == 1 and "wrong shape" in out


@pytest.mark.parametrize("extra, message", [
    (["--input-ids", ""], "empty prompt"),
    (["--input-ids", ",".join(["1"] * 250), "--max-new-tokens", "8"],
     "a prompt of 250 tokens and max_new_tokens 8 need 258 cache slots per row, but the cache holds 256: "
     "raise --max-seq-len"),
    (["--input-ids", "1,5000"], "outside the vocabulary"),
    (["--input-ids", "1,x"], "comma-separated integers"),
    (["--input-ids", "1,,2"], "comma-separated integers"),
    (["--prompt", "hello"], "no tokenizer"),
])
def test_bad_input_one_line_error(capsys, tiny_dir, extra, message):
    code, out, err = _run(capsys, "generate", "--model", tiny_dir, *extra)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_config_and_unsupported_config(capsys, tmp_path, tiny_dir):
    code, _, err = _run(capsys, "generate", "--model", str(tmp_path), "--input-ids", "1")
    assert code == 2 and "config.json" in err
    odd = tmp_path / "odd"
    shutil.copytree(tiny_dir, odd)
    config = json.loads((odd / "config.json").read_text())
    config["model_type"] = "llama"
    (odd / "config.json").write_text(json.dumps(config))
    code, _, err = _run(capsys, "inspect", "--model", str(odd))
    assert code == 2 and "model_type 'llama' is not supported" in err


def test_misshaped_tensor_is_a_clear_error(capsys, tiny_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["text_config"]["hidden_size"] = 32
    (broken / "config.json").write_text(json.dumps(config))
    code, _, err = _run(capsys, "generate", "--model", str(broken), "--input-ids", "1,2")
    assert code == 2 and "wrong shape" in err and "Traceback" not in err and err.count("\n") == 1


def test_console_script_is_installed():
    exe = shutil.which("qwen35-neuron")
    assert exe, "pip install -e . must install the qwen35-neuron console script"
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "demo" in result.stdout


def test_prompt_text_goes_through_the_tokenizer(capsys, tiny_dir, tmp_path):
    from qwen35_neuron.testing.tokenizer import write_tiny_tokenizer

    model = tmp_path / "with-tokenizer"
    shutil.copytree(tiny_dir, model)
    write_tiny_tokenizer(model)
    code, out, _ = _run(capsys, "generate", "--model", str(model), "--prompt", "hi there",
                        "--max-new-tokens", "4", "--json")
    assert code == 0
    byte_ids = ",".join(str(b) for b in "hi there".encode())
    by_ids = _run(capsys, "generate", "--model", str(model), "--input-ids", byte_ids, "--max-new-tokens", "4",
                  "--json")[1]
    assert json.loads(out) == json.loads(by_ids)
    code, out, _ = _run(capsys, "generate", "--model", str(model), "--prompt", "hello", "--max-new-tokens", "3")
    assert code == 0 and out.startswith("[0] [")


@pytest.mark.parametrize("argv, message", [
    (["kernels", "--tp", "3"], "--tp 3 does not split"),
    (["kernels", "--tp", "0"], "--tp 0 does not split"),
    (["kernels", "--seq", "0"], "--seq and --batch must be >= 1"),
    (["kernels", "--batch", "-1"], "--seq and --batch must be >= 1"),
])
def test_kernels_command_bad_options(capsys, argv, message):
    code, _, err = _run(capsys, *argv)
    assert code == 2 and message in err and err.count("\n") == 1


def test_roofline_picks_the_instance_by_tp(capsys, tmp_path):
    from qwen35_neuron.testing.family_configs import QWEN35_35B

    (tmp_path / "config.json").write_text(json.dumps(QWEN35_35B))
    code, out, _ = _run(capsys, "roofline", "--model", str(tmp_path), "--tp", "8")
    assert code == 0 and "trn2.48xlarge" in out
