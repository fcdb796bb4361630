"""Progress lines: on stderr only (stdout keeps --json clean), shown on a terminal or with --progress,
never with --quiet; loading, compiling, long generation and benchmark runs report."""

from __future__ import annotations

import io
import json
import types

from qwen35_neuron.cli import compile as compile_command
from qwen35_neuron.cli.main import main
from qwen35_neuron.cli.progress import Progress
from qwen35_neuron.runtime.benchmark import CONTEXT_ENCODING, TOKEN_GENERATION

GENERATE = ["generate", "--input-ids", "11,42,7", "--max-new-tokens", "4", "--json"]


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_progress_goes_to_stderr_and_json_stays_clean(capsys, tiny_dir):
    code, out, err = _run(capsys, *GENERATE, "--model", tiny_dir, "--progress")
    assert code == 0 and len(out.splitlines()) == 1 and "tokens" in json.loads(out)
    lines = err.splitlines()
    assert any("loading" in line and "done in" in line for line in lines)
    assert any("prefill of 1 prompt(s)" in line for line in lines)
    assert lines[-1].split("] ", 1)[1].startswith("generating up to 4 tokens for 1 prompt(s): done in")
    quiet = _run(capsys, *GENERATE, "--model", tiny_dir, "--quiet")
    not_a_terminal = _run(capsys, *GENERATE, "--model", tiny_dir)
    assert quiet[2] == not_a_terminal[2] == "" and quiet[1] == not_a_terminal[1] == out


def test_long_decoding_reports_at_intervals():
    now = [0.0]
    stream = io.StringIO()
    progress = Progress(True, stream=stream, clock=lambda: now[0], interval_s=3.0)
    listener = progress.generation(rows=2, max_new_tokens=50)
    listener(CONTEXT_ENCODING, 0.25)
    listener(CONTEXT_ENCODING, 0.125)  # a chunked prefill's second call
    for _ in range(9):  # one decode step per second
        now[0] += 1.0
        listener(TOKEN_GENERATION, 0.5)
    lines = stream.getvalue().splitlines()
    assert "prefill of 2 prompt(s): 250 ms" in lines[0] and "prefill continues (call 2): 125 ms" in lines[1]
    decode = [line.split("] ", 1)[1] for line in lines if "decoding" in line]
    assert decode == [f"decoding: token {n} of up to 50 per row, 2.0 steps/s" for n in (4, 7, 10)]
    silent = io.StringIO()
    Progress(False, stream=silent).generation(1, 5)(CONTEXT_ENCODING, 1.0)
    assert silent.getvalue() == ""


def test_bench_reports_each_run(capsys, tiny_dir, tmp_path):
    code, out, err = _run(capsys, "bench", "--model", tiny_dir, "--input-length", "8", "--max-new-tokens", "2",
                          "--num-runs", "2", "--buckets", "16", "--max-seq-len", "32", "--benchmark-report-path",
                          str(tmp_path / "r.json"), "--json", "--progress")
    assert code == 0 and json.loads(out)
    assert "run 1 of 2" in err and "run 2 of 2" in err and "1 warm-up + 2 timed runs: done in" in err


def test_compile_reports_its_stages(capsys, tiny_dir, tmp_path, monkeypatch):
    """The command's own flow around NxDI (gate, application, compile) with the neuron layer stubbed."""
    compiled = []

    class Application:
        def __init__(self, model_dir, config):
            self.model_dir, self.config = model_dir, config

        def compile(self, out_dir):
            compiled.append((self.model_dir, out_dir, self.config))

    stub = types.SimpleNamespace(Qwen35MoeForCausalLM=Application,
                                 inference_config=lambda model_dir, settings: ("config", settings.tp_degree))
    monkeypatch.setattr(compile_command, "import_neuron_layer", lambda: stub)
    out_dir = str(tmp_path / "compiled")
    code, out, err = _run(capsys, "compile", "--model-path", tiny_dir, "--compiled-model-path", out_dir,
                          "--tp-degree", "2", "--context-encoding-buckets", "16", "32", "--seq-len", "64",
                          "--progress")
    assert code == 0 and out == ""
    assert compiled == [(tiny_dir, out_dir, ("config", 2))]
    stages = [line.split("] ", 1)[1] for line in err.splitlines()]
    assert [s[:5] for s in stages if "done in" in s] == ["[1/3]", "[2/3]", "[3/3]"]
    assert "CTE buckets [16, 32], TKG buckets [64]" in err and "compiling 3 graphs" in err and stages[-1].startswith("compiled: load it with")
