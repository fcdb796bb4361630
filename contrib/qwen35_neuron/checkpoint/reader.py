"""Lazy access to a safetensors checkpoint: names, shapes and dtypes from the headers, data on demand.

The published Qwen3.5-35B-A3B is ~67 GB in 14 shards, so nothing here reads tensor data until
:meth:`CheckpointReader.get` asks for one tensor. Shapes come from each file's JSON header, which
costs a few kilobytes per shard and is checked against the file (:mod:`.safetensors_file`: a
truncated or corrupt shard fails here, naming the file and the tensor); this is what lets the
tensor gate run before any weight is read. Data is read with plain reads into fresh tensors, in
the stored dtype or converted to the caller's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO, Iterator

import torch

from ..errors import CheckpointError
from .safetensors_file import TensorInfo, read_header, read_into, read_tensor

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
read_safetensors_header = read_header  # the name earlier callers used


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
        self._handles: dict[str, BinaryIO] = {}

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
            for key, info in read_header(path).items():
                if key in infos:
                    raise CheckpointError(f"tensor {key} is stored twice ({infos[key].file} and {path.name}): "
                                          "remove the stale file")
                infos[key] = info
        return infos

    def _scan_index(self, index_path: Path) -> dict[str, TensorInfo]:
        try:
            weight_map: dict[str, str] = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, KeyError, TypeError) as err:
            raise CheckpointError(f"{index_path} is not a valid safetensors index (needs a weight_map): {err}; "
                                  "re-download it") from err
        if not isinstance(weight_map, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                       for k, v in weight_map.items()):
            raise CheckpointError(f"{index_path}: weight_map must map tensor names to shard file names: "
                                  "re-download it")
        headers: dict[str, dict[str, TensorInfo]] = {}
        for file_name in sorted(set(weight_map.values())):
            path = self.model_dir / file_name
            if Path(file_name).name != file_name or not path.is_file():
                raise CheckpointError(f"{index_path.name} lists shard {file_name}, which is not in {self.model_dir}: "
                                      "download the missing shard")
            headers[file_name] = read_header(path)
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
    def get(self, key: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Read one tensor (only its bytes are touched), converted to ``dtype`` when given."""
        info = self.info(key)
        tensor = read_tensor(self._handle(info.file), info, self.model_dir / info.file)
        return tensor if dtype is None or tensor.dtype == dtype else tensor.to(dtype)

    def read_into(self, key: str, out: torch.Tensor) -> torch.Tensor:
        """Read one tensor straight into ``out`` (contiguous, the stored dtype): no intermediate copy."""
        info = self.info(key)
        return read_into(self._handle(info.file), info, out, self.model_dir / info.file)

    def _handle(self, file_name: str) -> BinaryIO:
        handle = self._handles.get(file_name)
        if handle is None:
            try:
                handle = open(self.model_dir / file_name, "rb", buffering=0)
            except OSError as err:
                raise CheckpointError(f"cannot open {self.model_dir / file_name}: {err.strerror or err}") from err
            self._handles[file_name] = handle
        return handle

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def __enter__(self) -> "CheckpointReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CheckpointReader({str(self.model_dir)!r}, tensors={len(self)}, files={len(self.files)})"
