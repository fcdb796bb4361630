"""The trn2 commands on the application NxDI's ``to_cpu()`` loaded (real NxDI, this process, one rank):
`generate --compiled-model-path` and `bench --compiled-model-path` run on it in place of a compiled
directory's load (``neuron_app.load_compiled`` returns it), so everything after the load is the real path."""

from __future__ import annotations

import json

import pytest

from qwen35_neuron.cli import neuron_app
from qwen35_neuron.cli.main import main
from qwen35_neuron.runtime.benchmark import MODEL_PARTS, read_benchmark_report


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def loaded_app(application, tiny_dir, monkeypatch):
    """`Qwen35MoeForCausalLM` loaded by NxDI's to_cpu(), returned by load_compiled."""
    app = application(tiny_dir)
    monkeypatch.setattr(neuron_app, "load_compiled", lambda compiled, progress: app)
    return app


def test_generate_compiled_equals_the_cpu_runtime(loaded_app, capsys):
    code, out, _ = _run(capsys, "generate", "--compiled-model-path", "unused", "--input-ids", "11,42,7,99,3",
                        "--input-ids", "240,4,66", "--max-new-tokens", "5", "--compare-cpu", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["equal_to_cpu"] and [len(t) for t in result["tokens"]] == [5, 5]
    assert result["timing"]["ttft_s"] > 0 and result["timing"]["tpot_s"] > 0


def test_generate_compiled_chat_equals_the_cpu_chat(application, tiny_dir, tmp_path, monkeypatch, capsys):
    """--chat on the compiled model: the checkpoint named in the compiled config brings the tokenizer and
    its chat template; the tokens equal `generate --model --chat` on the CPU runtime."""
    import shutil

    from qwen35_neuron.testing.tokenizer import write_tiny_tokenizer

    model_dir = tmp_path / "with-chat-template"
    shutil.copytree(tiny_dir, model_dir)
    write_tiny_tokenizer(model_dir)
    app = application(str(model_dir))
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
def test_generate_images_with_compiled_towers(application, neuron_vl_dir, neuron_vl_images, tmp_path,
                                              monkeypatch, capsys):
    """--image with --vision-compiled: towers traced per bucket (TorchScript stands in for neuronx-cc,
    same files and manifest) feed the text graphs; tokens equal the CPU VL path's."""
    import torch

    from qwen35_neuron.config import load_model_config
    from qwen35_neuron.vision.compiled import compile_towers
    from qwen35_neuron.vl import VLRequest, assign_images_in_order
    from qwen35_neuron.vl.vision_runner import load_vision_tower
    from vl_cases import CASES, VISION_BUCKETS

    config = load_model_config(neuron_vl_dir)
    compile_towers(load_vision_tower(neuron_vl_dir, config), config.vision, VISION_BUCKETS, tmp_path / "vision",
                   lambda tower, example: torch.jit.trace(tower, example, check_trace=False), dtype="float32",
                   backend="cpu-jit")
    app = application(neuron_vl_dir)
    prompts = [list(CASES["two_images"][0]), list(CASES["one_image"][0])]
    images = [neuron_vl_images[n] for n in ("tall", "square", "wide")]
    assigned = assign_images_in_order(prompts, images, config.image_token_id)
    requests = [VLRequest(p, i) for p, i in zip(prompts, assigned)]
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
