"""Lazy access to a safetensors checkpoint: names, shapes and dtypes from the headers, data on demand.

The published Qwen3.5-35B-A3B is ~67 GB in 14 shards, so nothing here reads tensor data until
:meth:`CheckpointReader.get` asks for one tensor. Shapes come from parsing each file's JSON header
(8-byte little-endian length + JSON), which costs a few kilobytes per shard; this is what lets the
tensor gate run before any weight is read.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import safe_open

from ..errors import CheckpointError

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # a header bigger than this is not a safetensors header


@dataclass(frozen=True)
class TensorInfo:
    """What a header says about one tensor (no data)."""

    key: str
    shape: tuple[int, ...]
    dtype: str  # safetensors spelling: "F32", "BF16", "F16", "I64", "F8_E4M3", ...
    file: str  # file name inside the checkpoint directory


def read_safetensors_header(path: Path) -> dict[str, TensorInfo]:
    """Parse one safetensors file's header into :class:`TensorInfo` records, reading no tensor data."""
    try:
        with open(path, "rb") as handle:
            raw_len = handle.read(8)
            if len(raw_len) != 8:
                raise CheckpointError(f"{path} is too short to be a safetensors file: re-download it")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > _MAX_HEADER_BYTES:
                raise CheckpointError(f"{path} does not start with a safetensors header: is the file corrupt?")
            header: dict[str, Any] = json.loads(handle.read(header_len))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read the safetensors header of {path}: {err}") from err
    header.pop("__metadata__", None)
    return {
        key: TensorInfo(key=key, shape=tuple(int(d) for d in entry["shape"]), dtype=str(entry["dtype"]),
                        file=path.name)
        for key, entry in header.items()
    }


class CheckpointReader:
    """The tensors of one Hugging Face checkpoint directory, opened lazily.

    Honours ``model.safetensors.index.json`` (sharded), a single ``model.safetensors``, or, failing
    both, every ``*.safetensors`` file in the directory. Use as a context manager (or call
    :meth:`close`) to release the memory-mapped files.
    """

    def __init__(self, model_dir: str | Path):
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise CheckpointError(f"checkpoint directory {self.model_dir} does not exist")
        self._infos = self._scan()
        self._handles: dict[str, Any] = {}

    # ---- discovery ----
    def _scan(self) -> dict[str, TensorInfo]:
        index_path = self.model_dir / INDEX_FILE
        if index_path.is_file():
            return self._scan_index(index_path)
        single = self.model_dir / SINGLE_FILE
        files = [single] if single.is_file() else sorted(self.model_dir.glob("*.safetensors"))
        if not files:
            raise CheckpointError(
                f"{self.model_dir} has no {SINGLE_FILE}, {INDEX_FILE} or other *.safetensors file: "
                "point at a Hugging Face checkpoint directory with safetensors weights"
            )
        infos: dict[str, TensorInfo] = {}
        for path in files:
            for key, info in read_safetensors_header(path).items():
                if key in infos:
                    raise CheckpointError(f"tensor {key} is stored twice ({infos[key].file} and {path.name}): "
                                          "remove the stale file")
                infos[key] = info
        return infos

    def _scan_index(self, index_path: Path) -> dict[str, TensorInfo]:
        try:
            weight_map: dict[str, str] = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CheckpointError(f"{index_path} is not a valid safetensors index (needs a weight_map): {err}") from err
        headers: dict[str, dict[str, TensorInfo]] = {}
        for file_name in sorted(set(weight_map.values())):
            path = self.model_dir / file_name
            if not path.is_file():
                raise CheckpointError(f"{index_path.name} lists shard {file_name}, which is not in {self.model_dir}: "
                                      "download the missing shard")
            headers[file_name] = read_safetensors_header(path)
        infos: dict[str, TensorInfo] = {}
        for key, file_name in weight_map.items():
            info = headers[file_name].get(key)
            if info is None:
                raise CheckpointError(f"{index_path.name} places {key} in {file_name}, but that shard does not hold "
                                      "it: the index and the shards disagree (re-download the checkpoint)")
            infos[key] = info
        return infos

    # ---- header queries (no data read) ----
    def keys(self) -> list[str]:
        return list(self._infos)

    def __contains__(self, key: object) -> bool:
        return key in self._infos

    def __len__(self) -> int:
        return len(self._infos)

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def info(self, key: str) -> TensorInfo:
        try:
            return self._infos[key]
        except KeyError:
            raise CheckpointError(f"tensor {key} is not in the checkpoint at {self.model_dir}") from None

    def infos(self) -> dict[str, TensorInfo]:
        return dict(self._infos)

    def shape(self, key: str) -> tuple[int, ...]:
        return self.info(key).shape

    def dtype(self, key: str) -> str:
        return self.info(key).dtype

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(sorted({info.file for info in self._infos.values()}))

    # ---- data ----
    def get(self, key: str) -> torch.Tensor:
        """Read one tensor (only its bytes are touched)."""
        info = self.info(key)
        handle = self._handles.get(info.file)
        if handle is None:
            handle = safe_open(str(self.model_dir / info.file), framework="pt", device="cpu")
            self._handles[info.file] = handle
        return handle.get_tensor(key)

    def close(self) -> None:
        self._handles.clear()

    def __enter__(self) -> "CheckpointReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CheckpointReader({str(self.model_dir)!r}, tensors={len(self)}, files={len(self.files)})"
