"""``qwen35-neuron roofline`` from config.json alone (no weights in the directory)."""

from __future__ import annotations

import json

import pytest

from qwen35_neuron.testing.family_configs import QWEN35_35B, QWEN35_122B
from qwen35_neuron.cli.main import main


@pytest.fixture
def config_only(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN35_35B))
    return tmp_path


def test_35b_on_trn2_3xlarge(config_only, capsys):
    assert main(["roofline", "--model", str(config_only), "--tp", "4", "--instance", "trn2.3xlarge",
                 "--batch", "1"]) == 0
    out = capsys.readouterr().out
    assert "modelled (not measured)" in out and "TP 4, batch 1" in out
    assert "17.07 / 24.00 (fits)" in out and "routed experts (all 256, I/R=128)" in out
    assert "TPOT >=" in out and "assumptions:" in out


def test_default_tp_comes_from_the_instance_and_big_models_do_not_fit(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps(QWEN35_122B))
    assert main(["roofline", "--model", str(tmp_path), "--instance", "trn2.48xlarge", "--batch", "4"]) == 0
    out = capsys.readouterr().out
    assert "TP 8, batch 4" in out and "DOES NOT FIT" in out
    assert main(["roofline", "--model", str(tmp_path), "--instance", "trn2.48xlarge", "--tp", "16"]) == 0
    assert "(fits)" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--tp", "3"], "tp_degree 3"),
    (["--tp", "8", "--instance", "trn2.3xlarge"], "does not fit trn2.3xlarge"),
    (["--buckets", "128,x"], "--buckets"),
])
def test_bad_arguments_are_one_line_errors(config_only, capsys, args, message):
    assert main(["roofline", "--model", str(config_only), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
