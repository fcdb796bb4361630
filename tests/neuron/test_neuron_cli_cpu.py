"""The trn2 commands on a CPU: `compile --print-settings` and the one-line SDK errors without the SDK;
`generate --compiled-model-path` and `bench --compiled-model-path` on SDK stand-ins; the scripts
in compile_scripts/ as thin wrappers of the same commands."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from qwen35_neuron.cli import neuron_app
from qwen35_neuron.cli.main import main
from qwen35_neuron.runtime.benchmark import MODEL_PARTS, read_benchmark_report
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
])
def test_bad_settings_are_one_line_naming_the_flag(config_dir_35b, capsys, extra, message):
    code, _, err = _run(capsys, "compile", "--model-path", config_dir_35b, "--print-settings", *extra)
    assert code == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("argv", [
    ["compile", "--model-path", "{tiny}", "--compiled-model-path", "{out}", "--tp-degree", "2"],
    ["generate", "--compiled-model-path", "{out}", "--input-ids", "1,2"],
    ["bench", "--compiled-model-path", "{out}"],
])
def test_without_the_sdk_each_trn2_command_is_one_error_line(capsys, tiny_dir, tmp_path, argv):
    if "torch_neuronx" in sys.modules:
        pytest.skip("an SDK (or stand-in) is loaded")
    argv = [a.format(tiny=tiny_dir, out=tmp_path / "compiled") for a in argv]
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "needs the AWS Neuron SDK" in err and err.count("\n") == 1


def test_compile_checks_the_checkpoint_before_the_sdk(capsys, config_dir_35b, tmp_path):
    """A checkpoint without weights fails at the tensor gate, not after importing the SDK."""
    code, _, err = _run(capsys, "compile", "--model-path", config_dir_35b, "--compiled-model-path", str(tmp_path / "o"))
    assert code == 2 and "needs the AWS Neuron SDK" not in err and err.count("\n") == 1


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


@pytest.fixture
def loaded_app(fake_sdk_modules, tiny_dir, monkeypatch):
    """`Qwen35MoeForCausalLM` 'loaded' on a CPU (SDK stand-ins), returned by load_compiled."""
    import qwen35_neuron.neuron as neuron
    from nxdi_driver import build_application

    app, _ = build_application(neuron, tiny_dir)
    monkeypatch.setattr(neuron_app, "load_compiled", lambda compiled, progress: app)
    return app


def test_generate_compiled_equals_the_cpu_runtime(loaded_app, capsys):
    code, out, _ = _run(capsys, "generate", "--compiled-model-path", "unused", "--input-ids", "11,42,7,99,3",
                        "--input-ids", "240,4,66", "--max-new-tokens", "5", "--compare-cpu", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["equal_to_cpu"] and [len(t) for t in result["tokens"]] == [5, 5]
    assert result["timing"]["ttft_s"] > 0 and result["timing"]["tpot_s"] > 0


def test_generate_compiled_chat_equals_the_cpu_chat(fake_sdk_modules, tiny_dir, tmp_path, monkeypatch, capsys):
    """--chat on the compiled model: the checkpoint named in the compiled config brings the tokenizer and
    its chat template; the tokens equal `generate --model --chat` on the CPU runtime."""
    import shutil

    import qwen35_neuron.neuron as neuron
    from nxdi_driver import build_application
    from qwen35_neuron.testing.tokenizer import write_tiny_tokenizer

    model_dir = tmp_path / "with-chat-template"
    shutil.copytree(tiny_dir, model_dir)
    write_tiny_tokenizer(model_dir)
    app, _ = build_application(neuron, str(model_dir))
    monkeypatch.setattr(neuron_app, "load_compiled", lambda compiled, progress: app)
    chat = ["--chat", "--prompt", "Hi", "--prompt", "Hey you", "--no-thinking", "--max-new-tokens", "4", "--json"]
    code, out, _ = _run(capsys, "generate", "--compiled-model-path", "unused", *chat, "--compare-cpu")
    assert code == 0
    result = json.loads(out)
    assert result["equal_to_cpu"] and len(result["text"]) == 2
    code, cpu, _ = _run(capsys, "generate", "--model", str(model_dir), *chat, "--buckets", "32", "--max-seq-len", "64")
    assert code == 0 and json.loads(cpu)["tokens"] == result["tokens"]
    code, out, _ = _run(capsys, "generate", "--compiled-model-path", "unused", "--chat", "--prompt",
                        "A longer question", "--max-new-tokens", "4", "--compare-cpu", "--json")
    assert code == 0 and json.loads(out)["equal_to_cpu"]  # past the largest bucket (32): chunked, equal all the same
    code, _, err = _run(capsys, "generate", "--compiled-model-path", "unused", "--chat", "--prompt", "Hi",
                        "--max-new-tokens", "50")
    assert code == 2 and err.count("\n") == 1, err
    assert "and max_new_tokens 50 need 73 cache slots per row, but the cache holds 64: raise --seq-len" in err


def test_bench_compiled_writes_nxdi_report(loaded_app, tmp_path, capsys):
    path = tmp_path / "benchmark_report.json"
    code, out, _ = _run(capsys, "bench", "--compiled-model-path", "unused", "--batch-size", "2", "--input-length",
                        "12", "--max-new-tokens", "4", "--num-runs", "2", "--warmup", "1",
                        "--benchmark-report-path", str(path))
    assert code == 0, out
    report = read_benchmark_report(path)
    assert list(report) == list(MODEL_PARTS) and all(report[p] for p in MODEL_PARTS)
    assert "Trainium2: TP 1" in out and "wrote" in out
    e2e, cte, tkg = (report[p]["latency_ms_avg"] for p in MODEL_PARTS)
    assert e2e >= cte + 3 * tkg  # each run holds one prefill and 3 decode steps


def test_bench_compiled_refuses_what_was_not_compiled(loaded_app, tmp_path, capsys):
    for extra, message in ((["--batch-size", "5"], "exceeds the compiled batch size 4"),
                           (["--input-length", "32", "--max-new-tokens", "40"],
                            "a prompt of 32 tokens and max_new_tokens 40 need 72 cache slots per row, but the cache "
                            "holds 64: raise --seq-len (NeuronSettings.max_length, then recompile) to at least 72")):
        code, _, err = _run(capsys, "bench", "--compiled-model-path", "unused", *extra,
                            "--benchmark-report-path", str(tmp_path / "r.json"))
        assert code == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit stands in for torch_neuronx.trace
def test_generate_images_with_compiled_towers(fake_sdk_modules, neuron_vl_dir, neuron_vl_images, tmp_path,
                                              monkeypatch, capsys):
    """--image with --vision-compiled: towers traced per bucket (TorchScript stands in for neuronx-cc,
    same files and manifest) feed the text graphs; tokens equal the CPU VL path's."""
    import torch

    import qwen35_neuron.neuron as neuron
    from nxdi_driver import build_application
    from qwen35_neuron.config import load_model_config
    from qwen35_neuron.vision.compiled import compile_towers
    from qwen35_neuron.vl import VLRequest, assign_images_in_order
    from qwen35_neuron.vl.vision_runner import load_vision_tower
    from vl_cases import CASES, VISION_BUCKETS

    config = load_model_config(neuron_vl_dir)
    compile_towers(load_vision_tower(neuron_vl_dir, config), config.vision, VISION_BUCKETS, tmp_path / "vision",
                   lambda tower, example: torch.jit.trace(tower, example, check_trace=False), dtype="float32",
                   backend="cpu-jit")
    app, _ = build_application(neuron, neuron_vl_dir)
    prompts = [list(CASES["two_images"][0]), list(CASES["one_image"][0])]
    images = [neuron_vl_images[n] for n in ("tall", "square", "wide")]
    requests = [VLRequest(p, i) for p, i in zip(prompts, assign_images_in_order(prompts, images, config.image_token_id))]
    assert [len(r.images) for r in requests] == [2, 1]
    tokens, timing, session = neuron_app.generate_images(app, requests, 6, (), str(tmp_path / "vision"))
    assert session.run.vision_buckets == VISION_BUCKETS and timing["total_s"] > 0
    assert all(len(t) == 6 for t in tokens)
    assert tokens == neuron_app.cpu_vl_reference(session, requests, 6, ())

    monkeypatch.setattr(neuron_app, "load_compiled", lambda compiled, progress: app)  # the 'loaded' application
    argv = ["generate", "--compiled", "unused", "--input-ids", "11,252,250,253,42,7", "--input-ids", "3,4",
            "--image", neuron_vl_images["wide"], "--vision-compiled", str(tmp_path / "vision"), "--max-new-tokens",
            "5", "--compare-cpu", "--json", "--no-eos"]
    code, out, _ = _run(capsys, *argv)
    assert code == 0
    out = json.loads(out.splitlines()[-1])
    assert out["equal_to_cpu"] and [len(t) for t in out["tokens"]] == [5, 5]
    code, _, err = _run(capsys, "generate", "--compiled", "unused", "--input-ids", "11,252,250,253,42,7")
    assert code == 2 and "no --image was given" in err
