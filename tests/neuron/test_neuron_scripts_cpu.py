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


def test_images_with_the_adapter_loop_are_refused_before_loading(scripts, capsys):
    argv = ["--compiled", "/nonexistent", "--input-ids", "1,250,2", "--image", "x.png", "--loop", "adapter"]
    assert scripts["generate"].main(argv) == 2
    assert "cannot carry images" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit stands in for torch_neuronx.trace
def test_generate_images_with_compiled_towers(fake_sdk_modules, scripts, neuron_vl_dir, neuron_vl_images, tmp_path,
                                              monkeypatch, capsys):
    """--image with --vision-compiled: towers traced per bucket (TorchScript stands in for neuronx-cc,
    same files and manifest) feed the text graphs; tokens equal the CPU VL path's."""
    import torch

    import qwen35_neuron.neuron as neuron
    from nxdi_driver import build_application
    from qwen35_neuron.config import load_model_config
    from qwen35_neuron.vision.compiled import compile_towers
    from qwen35_neuron.vl.vision_runner import load_vision_tower
    from vl_cases import CASES, VISION_BUCKETS

    config = load_model_config(neuron_vl_dir)
    compile_towers(load_vision_tower(neuron_vl_dir, config), config.vision, VISION_BUCKETS, tmp_path / "vision",
                   lambda tower, example: torch.jit.trace(tower, example, check_trace=False), dtype="float32",
                   backend="cpu-jit")
    app, _ = build_application(neuron, neuron_vl_dir)
    gen = scripts["generate"]
    prompts = [list(CASES["two_images"][0]), list(CASES["one_image"][0])]
    requests = gen.image_requests(config, prompts, [neuron_vl_images[n] for n in ("tall", "square", "wide")])
    assert [len(r.images) for r in requests] == [2, 1]
    tokens, timing, session = gen.generate_images(app, requests, 6, (), str(tmp_path / "vision"))
    assert session.run.vision_buckets == VISION_BUCKETS and timing["total_s"] > 0
    assert all(len(t) == 6 for t in tokens)
    assert tokens == gen.cpu_vl_reference(neuron_vl_dir, session, requests, 6, ())

    monkeypatch.setattr(gen, "load", lambda compiled: app)  # the command line, on the 'loaded' application
    argv = ["--compiled", "unused", "--input-ids", "11,252,250,253,42,7", "--input-ids", "3,4",
            "--image", neuron_vl_images["wide"], "--vision-compiled", str(tmp_path / "vision"), "--max-new-tokens",
            "5", "--compare-cpu", "--json", "--no-eos"]
    assert gen.main(argv) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert out["equal_to_cpu"] and [len(t) for t in out["tokens"]] == [5, 5]
    assert gen.main(["--compiled", "unused", "--input-ids", "11,252,250,253,42,7"]) == 2
    assert "no --image was given" in capsys.readouterr().err
