"""`bench` and the benchmark report: NxDI's benchmark_report.json layout and definitions, the phase
timer that splits a generation into context encoding and token generation, real prompts of the
asked length, and the CPU command end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from qwen35_neuron.cli.bench import benchmark_prompts
from qwen35_neuron.cli.main import main
from qwen35_neuron.config import load_model_config
from qwen35_neuron.errors import InputError
from qwen35_neuron.runtime.benchmark import (
    CONTEXT_ENCODING,
    END_TO_END,
    MODEL_PARTS,
    REPORT_KEYS,
    TOKEN_GENERATION,
    BenchmarkRecord,
    PhaseTimer,
    benchmark_report,
    format_benchmark_report,
    measure,
    read_benchmark_report,
)
from qwen35_neuron.testing.tokenizer import write_tiny_tokenizer

# the keys NxDI 0.9's utils/benchmark.py generate_report writes, spelled out
NXDI_KEYS = {"latency_ms_p50", "latency_ms_p90", "latency_ms_p95", "latency_ms_p99", "latency_ms_p100",
             "latency_ms_avg", "throughput"}


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


class FakeEngine:
    def __init__(self):
        self.resets, self.calls = 0, []

    def reset(self):
        self.resets += 1

    def forward(self, input_ids, *rest):
        self.calls.append(tuple(input_ids.shape))
        return input_ids.shape


class Clock:
    """Advances 10 ms per reading."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 0.01
        return self.now


def test_report_has_nxdi_keys_and_definitions():
    record = BenchmarkRecord(batch_size=2, input_length=100, new_tokens=10)
    record.latencies[END_TO_END] = [1.0, 2.0, 3.0, 4.0]
    record.latencies[CONTEXT_ENCODING] = [0.1, 0.2, 0.3, 0.4]
    record.latencies[TOKEN_GENERATION] = [0.05] * 36
    report = benchmark_report(record)
    assert list(report) == [END_TO_END, CONTEXT_ENCODING, TOKEN_GENERATION]
    assert all(set(entry) == NXDI_KEYS == set(REPORT_KEYS) for entry in report.values())
    e2e = report[END_TO_END]
    assert e2e["latency_ms_p50"] == pytest.approx(np.percentile([1, 2, 3, 4], 50) * 1000)
    assert e2e["latency_ms_p90"] == pytest.approx(3700.0) and e2e["latency_ms_p100"] == pytest.approx(4000.0)
    assert e2e["latency_ms_avg"] == pytest.approx(2500.0)
    assert e2e["throughput"] == pytest.approx(4 * 110 * 2 / 10.0)  # runs x (prompt + new) x batch / seconds
    assert report[CONTEXT_ENCODING]["throughput"] == pytest.approx(4 * 100 * 2 / 1.0)
    assert report[TOKEN_GENERATION]["throughput"] == pytest.approx(4 * 10 * 2 / 1.8)  # NxDI counts every new token


def test_phase_timer_splits_prefill_from_decode_steps():
    engine, seen = FakeEngine(), []
    timer = PhaseTimer(engine, lambda phase, s: seen.append(phase), clock=Clock())
    timer.reset()
    for width in (16, 1, 1):
        timer.forward(torch.zeros(2, width))
    timer.reset()
    timer.forward(torch.zeros(2, 1))  # a one-token prompt: still the prefill
    timer.forward(input_ids=torch.zeros(2, 1))
    assert seen == [CONTEXT_ENCODING, TOKEN_GENERATION, TOKEN_GENERATION, CONTEXT_ENCODING, TOKEN_GENERATION]
    assert engine.resets == 2 and engine.calls[0] == (2, 16)


def test_measure_times_only_the_timed_runs():
    engine = FakeEngine()

    def generate_once(timer):
        timer.reset()
        timer.forward(torch.zeros(1, 8))
        for _ in range(3):
            timer.forward(torch.zeros(1, 1))

    record = measure(generate_once, engine, BenchmarkRecord(1, 8, 4), runs=3, warmup=2, clock=Clock())
    counts = {part: len(values) for part, values in record.latencies.items()}
    assert counts == {END_TO_END: 3, CONTEXT_ENCODING: 3, TOKEN_GENERATION: 9} and record.runs == 3
    assert len(engine.calls) == 5 * 4
    assert all(e2e > 0.01 * 4 for e2e in record.latencies[END_TO_END])


def test_reader_takes_nxdi_reports_and_refuses_other_layouts(tmp_path):
    entry = {key: 1.5 for key in NXDI_KEYS}
    nxdi = {END_TO_END: entry, CONTEXT_ENCODING: entry, TOKEN_GENERATION: entry, "vision_encoder_model": None}
    path = tmp_path / "benchmark_report.json"
    path.write_text(json.dumps(nxdi))
    assert read_benchmark_report(path) == nxdi
    assert "(not run)" in format_benchmark_report(nxdi)
    for bad in ({END_TO_END: {"latency_ms_p50": 1.0}}, {END_TO_END: {**entry, "throughput": "fast"}}, [], {}):
        path.write_text(json.dumps(bad))
        with pytest.raises(InputError):
            read_benchmark_report(path)


def test_benchmark_prompts_are_real_text_of_the_asked_length(tiny_dir, tmp_path):
    from transformers import AutoTokenizer

    config = load_model_config(tiny_dir)
    model = tmp_path / "with-tokenizer"
    shutil.copytree(tiny_dir, model)
    write_tiny_tokenizer(model)
    tokenizer = AutoTokenizer.from_pretrained(str(model), local_files_only=True)
    prompts = benchmark_prompts(config, 3, 700, tokenizer)
    assert [len(p) for p in prompts] == [700] * 3 and len({tuple(p) for p in prompts}) == 3
    assert tokenizer.decode(prompts[0]).startswith("The river started")
    random_ids = benchmark_prompts(config, 2, 500, None, seed=3)
    control = set(config.text.eos_token_ids) | {config.image_token_id, config.video_token_id,
                                                 config.vision_start_token_id, config.vision_end_token_id}
    assert [len(p) for p in random_ids] == [500, 500] and not control & set(random_ids[0] + random_ids[1])
    assert random_ids == benchmark_prompts(config, 2, 500, None, seed=3)


def test_cpu_bench_writes_the_nxdi_layout(capsys, tiny_dir, tmp_path):
    path = tmp_path / "report" / "benchmark_report.json"
    code, out, err = _run(capsys, "bench", "--model", tiny_dir, "--batch-size", "2", "--input-length", "16",
                          "--max-new-tokens", "4", "--num-runs", "2", "--buckets", "16,32", "--max-seq-len", "64",
                          "--benchmark-report-path", str(path), "--json")
    assert code == 0 and err == ""
    report = json.loads(out)
    assert report == read_benchmark_report(path) and list(report) == list(MODEL_PARTS)
    e2e, cte, tkg = (report[p]["latency_ms_avg"] for p in MODEL_PARTS)
    assert e2e >= cte + 3 * tkg  # each run holds one prefill and 3 decode steps
    code, out, _ = _run(capsys, "bench", "--model", tiny_dir, "--input-length", "8", "--max-new-tokens", "2",
                        "--num-runs", "1", "--buckets", "16", "--max-seq-len", "32", "--benchmark-report-path",
                        str(path))
    assert code == 0 and "CPU runtime: dense" in out and "token_generation_model" in out and f"wrote {path}" in out


@pytest.mark.parametrize("extra, message", [
    (["--num-runs", "0"], "--num-runs must be >= 1"),
    (["--warmup", "-1"], "--warmup must be >= 0"),
    (["--input-length", "40"], "need 104 cache slots per row, but the cache holds 64: raise --max-seq-len"),
    (["--input-length", "30", "--max-new-tokens", "40"], "a prompt of 30 tokens and max_new_tokens 40 need 70 cache"),
])
def test_cpu_bench_errors_are_one_line(capsys, tiny_dir, tmp_path, extra, message):
    code, out, err = _run(capsys, "bench", "--model", tiny_dir, "--buckets", "16,32", "--max-seq-len", "64",
                          "--benchmark-report-path", str(tmp_path / "r.json"), *extra)
    assert code == 2 and message in err and err.count("\n") == 1 and out == ""
    assert not (tmp_path / "r.json").exists()
