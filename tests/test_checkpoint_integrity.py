"""Corrupt checkpoints: every fault (truncation, a header of the wrong shape, impossible records,
NaN/Inf weights) is found before anything is built, by the reader, by ``inspect`` and by
``generate``, as one ``error:`` line naming the file, the tensor and the fix (exit 2)."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from qwen35_neuron.checkpoint import CheckpointReader, iter_text_tensors
from qwen35_neuron.checkpoint.integrity import scan_values
from qwen35_neuron.checkpoint.safetensors_file import SafetensorsWriter, count_non_finite, read_header
from qwen35_neuron.cli.main import main
from qwen35_neuron.errors import CheckpointError
from qwen35_neuron.testing import build_tiny_checkpoint

EMBED = "model.language_model.embed_tokens.weight"
DOWN = "model.language_model.layers.1.mlp.experts.down_proj"


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("intact"), seed=3)


def _copy(source: Path, dst: Path) -> Path:
    shutil.copytree(source, dst)
    return dst


def _header(path: Path) -> tuple[int, dict, bytes]:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return length, json.loads(raw[8:8 + length]), raw[8 + length:]


def _write_header(path: Path, header: dict, data: bytes) -> None:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def _last_tensor(header: dict) -> str:
    return max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


# ---- faults in the file, found from the headers ----

def _truncate(path: Path) -> str:
    _, header, _ = _header(path)
    path.write_bytes(path.read_bytes()[:-16])
    return _last_tensor(header)


def _wrong_json_shape(path: Path) -> str:
    _, _, data = _header(path)
    _write_header(path, {"tensors": ["a", "b"]}, data)
    return "tensors"


def _offsets_off_by_one(path: Path) -> str:
    _, header, data = _header(path)
    header[EMBED]["data_offsets"][1] -= 2
    _write_header(path, header, data)
    return EMBED


def _unknown_dtype(path: Path) -> str:
    _, header, data = _header(path)
    header[EMBED]["dtype"] = "Q4_K"
    _write_header(path, header, data)
    return EMBED


def _overlap(path: Path) -> str:
    _, header, data = _header(path)
    keys = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    a, b = keys[0], keys[1]
    size = header[b]["data_offsets"][1] - header[b]["data_offsets"][0]
    start = header[a]["data_offsets"][0]
    header[b]["data_offsets"] = [start, start + size]
    _write_header(path, header, data)
    return b


def _header_not_json(path: Path) -> str:
    raw = path.read_bytes()
    path.write_bytes(raw[:8] + b"\xff" * 16 + raw[24:])
    return "not valid JSON"


def _header_length_huge(path: Path) -> str:
    raw = path.read_bytes()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw[8:])
    return "truncated"


def _tiny_file(path: Path) -> str:
    path.write_bytes(b"abc")
    return "too short"


HEADER_FAULTS = {
    "truncated by 16 bytes": (_truncate, "truncated: tensor"),
    "header JSON of the wrong shape": (_wrong_json_shape, "is not a tensor record"),
    "data range shorter than the shape": (_offsets_off_by_one, "needs"),
    "unknown dtype": (_unknown_dtype, "which safetensors does not define"),
    "overlapping tensors": (_overlap, "overlap"),
    "header not JSON": (_header_not_json, "not valid JSON"),
    "header length beyond the file": (_header_length_huge, "truncated"),
    "three-byte file": (_tiny_file, "too short"),
}


@pytest.mark.parametrize("fault", sorted(HEADER_FAULTS))
def test_header_faults_are_one_error_naming_file_tensor_and_fix(capsys, source, tmp_path, fault):
    break_file, message = HEADER_FAULTS[fault]
    broken = _copy(source, tmp_path / "broken")
    named = break_file(broken / "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors") as raised:
        CheckpointReader(broken)
    text = str(raised.value)
    assert message in text and named in text and ("re-download" in text or "re-export" in text), text
    for argv in (["inspect", "--model", str(broken)], ["generate", "--model", str(broken), "--input-ids", "1,2"]):
        code, out, err = _cli(capsys, *argv)
        _one_error(code, err, "model.safetensors", message)
        assert "OK" not in out


def test_index_faults(capsys, tmp_path):
    sharded = build_tiny_checkpoint(tmp_path / "sharded", seed=3, shards=2)
    index = sharded / "model.safetensors.index.json"
    original = index.read_text()
    for content, message in (('{"weight_map": [1, 2]}', "weight_map must map tensor names"),
                             ('{"weight_map": {"x": "../../etc/passwd"}}', "which is not in"),
                             ("[]", "not a valid safetensors index")):
        index.write_text(content)
        code, _, err = _cli(capsys, "inspect", "--model", str(sharded))
        _one_error(code, err, "model.safetensors.index.json", message)
    index.write_text(original)
    shard = sorted(sharded.glob("model-*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:-16])
    code, _, err = _cli(capsys, "generate", "--model", str(sharded), "--input-ids", "1,2")
    _one_error(code, err, shard.name, "truncated")


# ---- NaN / Inf weights ----

@pytest.fixture
def nan_checkpoint(source, tmp_path) -> Path:
    broken = _copy(source, tmp_path / "nan")
    tensors = load_file(str(broken / "model.safetensors"))
    tensors[DOWN][0, 0, :3] = float("nan")
    tensors[EMBED][5, 1] = float("inf")
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    return broken


def test_nan_weights_pass_the_header_gate_but_not_the_value_scan(capsys, nan_checkpoint):
    code, out, _ = _cli(capsys, "inspect", "--model", str(nan_checkpoint))
    assert code == 0 and "OK" in out  # the headers are fine
    code, out, err = _cli(capsys, "inspect", "--model", str(nan_checkpoint), "--scan-values")
    _one_error(code, err, "NaN/Inf", "re-download model.safetensors")
    # the closing line points at the files, not at the command just run
    assert "2 tensor(s) hold NaN/Inf" in err and "--scan-values" not in err, err
    assert f"tensor {DOWN} holds 3 NaN/Inf values" in out and f"tensor {EMBED} holds 1 NaN/Inf values" in out
    with CheckpointReader(nan_checkpoint) as reader:
        assert {(p.key, p.bad) for p in scan_values(reader)} == {(DOWN, 3), (EMBED, 1)}


def test_loader_and_generate_refuse_nan_weights(capsys, nan_checkpoint):
    with pytest.raises(CheckpointError, match=f"tensor {EMBED} holds 1 NaN/Inf values"):
        list(iter_text_tensors(nan_checkpoint))
    code, out, err = _cli(capsys, "generate", "--model", str(nan_checkpoint), "--input-ids", "1,2", "--json")
    _one_error(code, err, f"{nan_checkpoint / 'model.safetensors'}: tensor {EMBED}", "corrupt",
               f"inspect --model {nan_checkpoint} --scan-values")
    assert out == ""


def test_per_expert_nan_names_the_expert_tensor(tmp_path):
    path = build_tiny_checkpoint(tmp_path / "per-expert", seed=3, layout="per_expert")
    tensors = load_file(str(path / "model.safetensors"))
    key = "model.language_model.layers.2.mlp.experts.5.up_proj.weight"
    tensors[key][1, 1] = float("-inf")
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=f"tensor {key} holds 1 NaN/Inf"):
        list(iter_text_tensors(path))


# ---- the gate's one-line summary ----

def test_gate_error_names_the_tensor_and_the_directory_typed(capsys, source, tmp_path):
    broken = _copy(source, tmp_path / "misshaped")
    config = json.loads((broken / "config.json").read_text())
    config["text_config"]["moe_intermediate_size"] = 48
    (broken / "config.json").write_text(json.dumps(config))
    code, _, err = _cli(capsys, "generate", "--model", str(broken), "--input-ids", "1,2")
    _one_error(code, err, "wrong shape: layers.0.mlp.experts.gate_up_proj", "expected [8, 96, 64], found [8, 64, 64]",
               "fix: use the config.json", f"qwen35-neuron inspect --model {broken}")
    assert "--model DIR" not in err


# ---- the format module itself ----

def test_writer_round_trips_and_refuses_a_wrong_order(tmp_path):
    tensors = {"a": torch.randn(3, 4).to(torch.bfloat16), "b": torch.arange(5, dtype=torch.int32),
               "c": torch.zeros(0, 2), "d": torch.tensor(2.5, dtype=torch.float64)}
    plan = [(name, tuple(t.shape), t.dtype) for name, t in tensors.items()]
    with SafetensorsWriter(tmp_path / "x.safetensors", plan) as writer:
        for name, tensor in tensors.items():
            writer.write(name, tensor)
    loaded = load_file(str(tmp_path / "x.safetensors"))
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    assert {k: (i.shape, i.dtype) for k, i in read_header(tmp_path / "x.safetensors").items()} == {
        "a": ((3, 4), "BF16"), "b": ((5,), "I32"), "c": ((0, 2), "F32"), "d": ((), "F64")}
    with pytest.raises(ValueError, match="expected a"):
        with SafetensorsWriter(tmp_path / "y.safetensors", plan) as writer:
            writer.write("b", tensors["b"])
    assert not (tmp_path / "y.safetensors").exists()  # a failed write leaves no partial file


def test_non_finite_count_is_chunked_and_exact():
    t = torch.zeros(1000)
    t[[3, 500, 999]] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    assert count_non_finite(t, chunk=7) == 3
    assert count_non_finite(t.to(torch.bfloat16), chunk=64) == 3
    assert count_non_finite(torch.arange(4)) == 0
