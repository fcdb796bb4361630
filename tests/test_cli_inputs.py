"""Hostile input to every command and script: each mistake is one ``error:`` line naming the flag as
typed, exit code 2, no traceback, and nothing is loaded or run first."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qwen35_neuron.cli.main import main
from qwen35_neuron.testing.family_configs import QWEN35_35B

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "compile_scripts"


def _one_error(capsys, code: int, *needles: str) -> str:
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def _gen(tiny_dir, *extra):
    return ["generate", "--model", tiny_dir, "--input-ids", "1,2", *extra]


GENERATE_CASES = [
    (["--do-sample", "--temperature", "nan"], "--temperature must be a finite number > 0, got 'nan'"),
    (["--do-sample", "--temperature", "inf"], "--temperature must be a finite number"),
    (["--temperature", "-1"], "--temperature must be"),
    (["--temperature", "0"], "--temperature must be"),
    (["--top-p", "0"], "--top-p must be a finite number > 0 and <= 1"),
    (["--top-p", "1.5"], "--top-p must be"),
    (["--top-p", "nan"], "--top-p must be"),
    (["--top-k", "-3"], "--top-k must be >= 0"),
    (["--seed", str(2**64)], "--seed must be in 0..18446744073709551615"),
    (["--seed", "-1"], "--seed must be"),
    (["--seed", "1.5"], "--seed must be"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
    (["--max-new-tokens", "-5"], "--max-new-tokens must be"),
    (["--max-new-tokens", "100000"], "the cache holds 256: raise --max-seq-len"),
    (["--max-seq-len", "0"], "--max-seq-len must be"),
    (["--max-seq-len", "100000000", "--buckets", "16"], "beyond the model's max_position_embeddings"),
    (["--buckets", "0"], "--buckets must be comma-separated integers >= 1"),
    (["--buckets", ","], "--buckets must be"),
    (["--buckets", "16,-4"], "--buckets must be"),
    (["--buckets", "512"], "--max-seq-len 256 is below the largest --buckets length 512"),
    (["--tp", "2"], "--tp 2 needs --backend simulated-tp"),
    (["--backend", "simulated-tp", "--tp", "3"], "--tp 3"),
    (["--backend", "simulated-tp", "--tp", "0"], "--tp must be in 1..64"),
    (["--backend", "simulated-tp", "--tp", "100000"], "--tp must be"),
    (["--backend", "cuda"], "--backend: invalid choice"),
    (["--dtype", "float16"], "--dtype: invalid choice"),
    (["--min-pixels", "0"], "--min-pixels must be"),
    (["--max-pixels", "-1"], "--max-pixels must be"),
    (["--vision-buckets", "0"], "--vision-buckets must be"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    # Trainium2-only flags on the CPU runtime: refused (a silent --compare-cpu would pass without comparing)
    (["--compare-cpu"], "--compare-cpu is for a compiled model on Trainium2: it needs --compiled-model-path"),
    (["--loop", "adapter"], "--loop is for a compiled model on Trainium2: it needs --compiled-model-path"),
    (["--loop", "direct"], "--loop is for a compiled model"),
    (["--vision-compiled", "towers"], "--vision-compiled is for a compiled model on Trainium2: it needs "
                                      "--compiled-model-path"),
]


@pytest.mark.parametrize("extra, message", GENERATE_CASES)
def test_generate_bad_options(capsys, tiny_dir, extra, message):
    _one_error(capsys, main(_gen(tiny_dir, *extra)), message)


@pytest.mark.parametrize("ids, message", [
    ("1 2 3", "--input-ids must be comma-separated integers, got '1 2 3'"),  # never the single id 123
    ("1_000", "--input-ids must be comma-separated integers"),
    ("1,2,", "--input-ids must be comma-separated integers"),
    ("[1, 2]", "--input-ids must be comma-separated integers"),
    ("-1", "token id -1 is outside the vocabulary"),
    ("99999999999999999999999", "outside the vocabulary"),
    ("1.5", "--input-ids must be comma-separated integers"),
    ("", "empty prompt"),
])
def test_generate_bad_prompts(capsys, tiny_dir, ids, message):
    _one_error(capsys, main(["generate", "--model", tiny_dir, "--input-ids", ids]), message)


def test_spaces_around_commas_are_fine(capsys, tiny_dir):
    assert main(["generate", "--model", tiny_dir, "--input-ids", " 1, 2 ,3", "--max-new-tokens", "2", "--json"]) == 0
    spaced = capsys.readouterr().out
    assert main(["generate", "--model", tiny_dir, "--input-ids", "1,2,3", "--max-new-tokens", "2", "--json"]) == 0
    assert capsys.readouterr().out == spaced


def test_tiny_temperature_is_greedy_not_nan(capsys, tiny_dir):
    """1e-44 / logits overflowed to inf (NaN probabilities); scaled from the row maximum it is greedy."""
    assert main(_gen(tiny_dir, "--max-new-tokens", "5", "--json")) == 0
    greedy = json.loads(capsys.readouterr().out)["tokens"]
    assert main(_gen(tiny_dir, "--max-new-tokens", "5", "--json", "--do-sample", "--temperature", "1e-44")) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == greedy


def test_unreadable_images_are_one_line(capsys, tiny_dir, tmp_path):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "bomb.png"  # claims 100000 x 100000 pixels
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))
    (tmp_path / "empty.png").write_bytes(b"")
    for image in (bomb, tmp_path / "empty.png", tmp_path):
        code = main(["generate", "--model", tiny_dir, "--input-ids", "1,250", "--image", str(image)])
        _one_error(capsys, code, "cannot read image", "pass a readable PNG/JPEG/WebP file")


def test_generate_bad_model_paths(capsys, tmp_path, tiny_dir):
    _one_error(capsys, main(["generate", "--model", str(tmp_path / "nope"), "--input-ids", "1"]), "does not exist")
    config = str(Path(tiny_dir) / "config.json")
    _one_error(capsys, main(["generate", "--model", config, "--input-ids", "1"]), "is a file, not a model directory")
    _one_error(capsys, main(["generate", "--input-ids", "1"]), "--model/--model-path --compiled-model-path/--compiled is required")


@pytest.mark.parametrize("content, message", [
    ("", "is not valid JSON"),
    ("[" * 100000, "is not valid JSON"),  # nesting deeper than the JSON parser recurses
    ("null", "must hold a JSON object"),
    ('{"model_type": "qwen3_5_moe", "text_config": "big"}', "'text_config' must be a JSON object"),
])
def test_broken_config_json_is_one_line(capsys, tmp_path, content, message):
    (tmp_path / "config.json").write_text(content)
    for argv in (["generate", "--input-ids", "1"], ["inspect"], ["roofline"]):
        _one_error(capsys, main([argv[0], "--model", str(tmp_path), *argv[1:]]), message)


def test_generate_broken_tokenizer_is_one_line(capsys, tiny_dir, tmp_path):
    model = tmp_path / "bad-tokenizer"
    model.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        os.symlink(Path(tiny_dir) / name, model / name)
    (model / "tokenizer.json").write_text("{broken")
    _one_error(capsys, main(["generate", "--model", str(model), "--prompt", "hi"]), "cannot load the tokenizer")


def test_do_sample_without_seed_draws_a_fresh_printed_seed(capsys, tiny_dir):
    argv = _gen(tiny_dir, "--do-sample", "--max-new-tokens", "6", "--json")
    seeds, tokens = [], []
    for _ in range(2):
        assert main(argv) == 0
        out = json.loads(capsys.readouterr().out)
        seeds.append(out["seed"])
        tokens.append(out["tokens"])
    assert seeds[0] != seeds[1] and all(0 <= s < 2**64 for s in seeds)
    assert main([*argv, "--seed", str(seeds[0])]) == 0  # the printed seed repeats the run
    again = json.loads(capsys.readouterr().out)
    assert again == {"tokens": tokens[0], "seed": seeds[0]}
    assert main(_gen(tiny_dir, "--max-new-tokens", "2", "--json")) == 0
    assert "seed" not in json.loads(capsys.readouterr().out)  # greedy: no seed


@pytest.mark.parametrize("argv, message", [
    (["demo", "--head-dim", "0"], "--head-dim must be in 8..512, got 0"),
    (["demo", "--head-dim", "12"], "--head-dim 12 must be a multiple of 8"),
    (["demo", "--head-dim", "100000"], "--head-dim must be"),
    (["demo", "--backend", "simulated-tp", "--tp", "3"], "--tp 3"),
    (["demo", "--tp", "2"], "--tp 2 needs --backend simulated-tp"),
    (["demo", "--seed", "-5"], "--seed must be"),
    (["kernels", "--seq", "20000"], "--seq 20000 is longer than flash_attention_d256 keeps in SBUF"),
    (["kernels", "--seq", "1e3"], "--seq: invalid int value"),
    (["kernels", "--batch", "1000"], "--batch 1000 is beyond"),
    (["kernels", "--tp"], "--tp: expected at least one argument"),
    (["nonsense"], "invalid choice: 'nonsense'"),
])
def test_other_commands_bad_options(capsys, argv, message):
    _one_error(capsys, main(argv), message)


@pytest.fixture
def config_35b_dir(tmp_path) -> str:
    (tmp_path / "config.json").write_text(json.dumps(QWEN35_35B))
    return str(tmp_path)


@pytest.mark.parametrize("extra, message", [
    (["--tp", "0"], "--tp must be in 1..64"),
    (["--batch", "0"], "--batch must be"),
    (["--max-seq-len", "-1"], "--max-seq-len must be"),
    (["--context", "100000"], "--context 100000 is beyond --max-seq-len 4096"),
    (["--buckets", "99999"], "--buckets 99999 is beyond --max-seq-len"),
    (["--buckets", ""], "--buckets must be"),
    (["--instance", "p5.48xlarge"], "--instance: invalid choice"),
])
def test_roofline_bad_options(capsys, config_35b_dir, extra, message):
    _one_error(capsys, main(["roofline", "--model", config_35b_dir, *extra]), message)


def test_roofline_long_contexts_beyond_the_model(capsys, tiny_dir):
    """The tiny model holds 1024 positions: lengths the user gave past it are an error; the default 32k/128k/262k
    are skipped with one line saying so, never silently."""
    _one_error(capsys, main(["roofline", "--model", tiny_dir, "--tp", "1", "--long-contexts", "512,2048"]),
               "--long-contexts 2048 is beyond the model's max_position_embeddings 1024")
    assert main(["roofline", "--model", tiny_dir, "--tp", "1"]) == 0
    out = capsys.readouterr().out
    assert "long contexts 32768, 131072, 262144 not modelled: beyond the model's max_position_embeddings 1024" in out
    assert main(["roofline", "--model", tiny_dir, "--tp", "1", "--long-contexts", "512,1024"]) == 0
    out = capsys.readouterr().out
    assert "beyond the model's max_position_embeddings" not in out and "\n  1024 " in out


def test_closed_pipe_is_quiet():
    """`roofline ... | head -1`: the reader goes away after one line; no traceback, no error line."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "contrib")}
    script = ("import json,sys,tempfile,pathlib;from qwen35_neuron.testing.family_configs import QWEN35_35B;"
              "d=tempfile.mkdtemp();pathlib.Path(d,'config.json').write_text(json.dumps(QWEN35_35B));print(d)")
    model = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                           check=True).stdout.strip()
    cmd = f"{sys.executable} -m qwen35_neuron.cli.main roofline --model {model} --tp 4 | head -1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.count("\n") == 1 and done.stderr == "", done.stderr
    assert done.returncode in (0, 1)  # 1: the command stopped early because its reader left


@pytest.mark.parametrize("script, argv", [
    ("bench_long_prefill", ["--nope"]),
    ("bench_long_prefill", ["--lengths", "0"]),
    ("bench_graph_bytes", ["--nope"]),
    ("bench_memory", ["--tp", "8"]),
])
def test_scripts_without_options_refuse_arguments(script, argv):
    """A benchmark without options refuses any argument (one line, exit 2) rather than running as if not given."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "contrib")}
    done = subprocess.run([sys.executable, str(SCRIPTS / f"{script}.py"), *argv], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == "", (done.returncode, done.stdout, done.stderr)
    assert done.stderr == f"error: {script}.py takes no arguments\n", done.stderr


@pytest.fixture
def scripts(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return {name: importlib.import_module(name)
            for name in ("compile_text", "generate", "bench_trn2", "compile_vision", "bench_cpu", "bench_speculative")}


@pytest.mark.parametrize("script, argv, message", [
    ("compile_text", ["--print-settings", "--tp", "0"], "--tp-degree/--tp must be in 1..64"),
    ("compile_text", ["--print-settings", "--buckets", "128,x"], "--context-encoding-buckets takes integers"),
    ("compile_text", ["--print-settings", "--tp", "3"], "--tp-degree 3"),
    ("compile_text", ["--print-settings", "--lnc", "3"], "--logical-nc-config/--lnc: invalid choice"),
    ("generate", ["--compiled", "x", "--input-ids", "1", "--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
    ("generate", ["--compiled", "x", "--input-ids", "1", "--min-pixels", "0"], "--min-pixels must be"),
    ("bench_trn2", ["--compiled", "x", "--seed", str(2**70)], "--seed must be"),
    ("compile_vision", ["OUT", "--buckets", "0"], "--buckets must be"),
    ("compile_vision", ["OUT", "--max-pixels", "100", "--count", "0"], "--count must be"),
    ("compile_vision", ["OUT", "--max-pixels", "100", "--align", "0"], "--align must be"),
    ("bench_cpu", ["--batch", "0"], "--batch must be"),
    ("bench_cpu", ["--hf-experts", "fast"], "--hf-experts: invalid choice"),
    ("bench_speculative", ["--mix-scale", "nan"], "--mix-scale must be a finite number >= 0"),
    ("bench_speculative", ["--new-tokens", "0"], "--new-tokens must be >= 1"),
])
def test_script_bad_options(scripts, capsys, config_35b_dir, script, argv, message):
    if script == "compile_text":
        argv = ["--model-path", config_35b_dir, *argv]
    elif script == "compile_vision":
        argv = [config_35b_dir, *argv]
    _one_error(capsys, scripts[script].main(argv), message)
