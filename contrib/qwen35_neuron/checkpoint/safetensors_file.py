"""The safetensors file format, read and written one tensor at a time, with every header checked.

Layout: 8-byte little-endian header length, a JSON header ``{name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {...}}``, then the tensors' bytes (offsets relative
to the end of the header).

Reading: :func:`read_header` validates the whole header against the file before any tensor is
read (JSON of the right shape, known dtypes, shapes that match their byte ranges, ranges inside
the file - a truncated download is caught here - and no two ranges overlapping). Tensor data is
read with plain ``readinto`` into a fresh tensor of the stored dtype: no memory map, so the
process's resident memory holds what the caller keeps, not every page of the file it touched.

Writing: :class:`SafetensorsWriter` takes the list of (name, shape, dtype) first, writes the
header, then each tensor's bytes in that order, so a converted checkpoint can be written tensor
by tensor without holding it whole.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

import torch

from ..errors import CheckpointError

MAX_HEADER_BYTES = 100 * 1024 * 1024  # a header bigger than this is not a safetensors header
WRITE_BLOCK_BYTES = 8 * 1024 * 1024  # a non-contiguous tensor is written in contiguous copies of about this size
ALIGNMENT = 8  # the header is padded with spaces so the data starts 8-byte aligned
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U64": torch.uint64, "U32": torch.uint32, "U16": torch.uint16, "U8": torch.uint8, "BOOL": torch.bool,
}
NAMES: dict[torch.dtype, str] = {dtype: name for name, dtype in DTYPES.items()}
_REDOWNLOAD = "re-download it (or re-export the checkpoint)"


@dataclass(frozen=True)
class TensorInfo:
    """What a header says about one tensor (no data): where its bytes are in which file."""

    key: str
    shape: tuple[int, ...]
    dtype: str  # safetensors spelling: "F32", "BF16", "F16", "I64", "F8_E4M3", ...
    file: str  # file name inside the checkpoint directory
    offset: int = 0  # absolute byte offset of the data in the file
    nbytes: int = 0

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def _bad(path: Path, problem: str, fix: str = _REDOWNLOAD) -> CheckpointError:
    return CheckpointError(f"{path}: {problem}: {fix}")


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Every tensor record of one safetensors file, checked against the file's size (no data read)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            raw_len = handle.read(8)
            if len(raw_len) != 8:
                raise _bad(path, f"{size} bytes is too short to be a safetensors file (truncated)")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > MAX_HEADER_BYTES:
                raise _bad(path, "does not start with a safetensors header (is it a safetensors file?)")
            if 8 + header_len > size:
                raise _bad(path, f"the header needs {8 + header_len} bytes but the file has {size} (truncated)")
            text = handle.read(header_len)
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise _bad(path, f"the safetensors header is not valid JSON ({err})") from err
    if not isinstance(header, dict):
        raise _bad(path, f"the safetensors header is a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not isinstance(metadata, dict):
        raise _bad(path, "the header's __metadata__ is not a JSON object")
    data_start = 8 + header_len
    infos = {key: _record(path, key, entry, data_start, size) for key, entry in header.items()}
    _check_no_overlap(path, infos)
    return infos


def _record(path: Path, key: str, entry: Any, data_start: int, size: int) -> TensorInfo:
    """One header entry as a TensorInfo, or an error naming the file, the tensor and the fault."""
    fields_ok = (isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
                 and isinstance(entry.get("shape"), list) and isinstance(entry.get("data_offsets"), list))
    if not fields_ok:
        raise _bad(path, f"header entry {key!r} is not a tensor record (dtype, shape, data_offsets)")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPES:
        raise _bad(path, f"tensor {key!r} has dtype {dtype!r}, which safetensors does not define")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise _bad(path, f"tensor {key!r} has shape {shape}, not a list of sizes >= 0")
    if not (len(offsets) == 2 and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        raise _bad(path, f"tensor {key!r} has data_offsets {offsets}, not [begin, end] with 0 <= begin <= end")
    begin, end = offsets
    nbytes = math.prod(shape) * torch.empty((), dtype=DTYPES[dtype]).element_size()
    if end - begin != nbytes:
        raise _bad(path, f"tensor {key!r} of shape {list(shape)} in {dtype} needs {nbytes} bytes but its data range "
                         f"holds {end - begin}")
    if data_start + end > size:
        raise _bad(path, f"truncated: tensor {key!r} needs bytes up to {data_start + end} but the file has {size}")
    return TensorInfo(key=key, shape=tuple(shape), dtype=dtype, file=path.name, offset=data_start + begin,
                      nbytes=nbytes)


def _check_no_overlap(path: Path, infos: dict[str, TensorInfo]) -> None:
    previous: TensorInfo | None = None
    for info in sorted((i for i in infos.values() if i.nbytes), key=lambda i: i.offset):
        if previous is not None and info.offset < previous.offset + previous.nbytes:
            raise _bad(path, f"tensors {previous.key!r} and {info.key!r} overlap in the file (corrupt)")
        previous = info


def read_into(handle: BinaryIO, info: TensorInfo, out: torch.Tensor, path: Path | str = "") -> torch.Tensor:
    """Read ``info``'s bytes into ``out`` (contiguous, same dtype and number of elements)."""
    if not out.is_contiguous() or out.dtype != info.torch_dtype or out.numel() != math.prod(info.shape):
        raise ValueError(f"read_into needs a contiguous {info.dtype} tensor of {math.prod(info.shape)} elements")
    if info.nbytes == 0:
        return out
    view = memoryview(out.reshape(-1).view(torch.uint8).numpy())
    handle.seek(info.offset)
    done = 0
    while done < info.nbytes:
        count = handle.readinto(view[done:])
        if not count:
            raise CheckpointError(f"{path or info.file}: truncated while reading tensor {info.key!r} ({done} of "
                                  f"{info.nbytes} bytes): {_REDOWNLOAD}")
        done += count
    return out


def read_tensor(handle: BinaryIO, info: TensorInfo, path: Path | str = "") -> torch.Tensor:
    """A new tensor of the stored dtype and shape holding ``info``'s bytes."""
    return read_into(handle, info, torch.empty(info.shape, dtype=info.torch_dtype), path)


def count_non_finite(tensor: torch.Tensor, chunk: int = 1 << 22) -> int:
    """NaN and +-Inf values in a floating tensor. A NaN or Inf anywhere makes the sum non-finite, so
    one sum (fast, no temporary) clears an intact tensor; only a suspect one is counted exactly,
    ``chunk`` elements at a time (a full bool mask of a 1 GB tensor would cost another 0.5 GB)."""
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return 0
    try:
        if bool(torch.isfinite(tensor.sum())):
            return 0
    except (RuntimeError, NotImplementedError):  # dtypes without a CPU sum (fp8): count exactly
        pass
    flat = tensor.reshape(-1)
    return sum(int((~torch.isfinite(flat[i:i + chunk].float())).sum()) for i in range(0, flat.numel(), chunk))


def _contiguous_blocks(tensor: torch.Tensor, block_bytes: int = WRITE_BLOCK_BYTES) -> Iterator[torch.Tensor]:
    """``tensor``'s elements in storage order as contiguous pieces: itself when contiguous, else
    copies of slices along dim 0 of at most ~``block_bytes`` each (a strided view, e.g. a rank's
    columns, is written without a full contiguous copy)."""
    if tensor.is_contiguous() or tensor.dim() == 0:
        yield tensor.contiguous()
        return
    if tensor.shape[0] == 0:
        return
    row_bytes = tensor[0].numel() * tensor.element_size()
    if row_bytes > block_bytes and tensor.dim() > 1:  # one slice is still big: go one dim deeper
        for row in tensor:
            yield from _contiguous_blocks(row, block_bytes)
        return
    step = max(1, block_bytes // max(row_bytes, 1))
    for start in range(0, tensor.shape[0], step):
        yield tensor[start:start + step].contiguous()


class SafetensorsWriter:
    """Write one safetensors file tensor by tensor, in the order of ``plan``.

    ``plan`` lists every (name, shape, dtype) up front: the header (with every data offset) is
    written at once, then :meth:`write` appends each tensor's bytes. :meth:`close` checks that
    every planned tensor came. Use as a context manager.
    """

    def __init__(self, path: str | Path, plan: Iterable[tuple[str, tuple[int, ...], torch.dtype]],
                 metadata: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self._plan = [(name, tuple(int(d) for d in shape), dtype) for name, shape, dtype in plan]
        header: dict[str, Any] = {"__metadata__": dict(metadata or {"format": "pt"})}
        offset = 0
        for name, shape, dtype in self._plan:
            if name in header:
                raise ValueError(f"{name} is planned twice")
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            header[name] = {"dtype": NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-(8 + len(text)) % ALIGNMENT)
        self._handle = open(self.path, "wb", buffering=0)  # tensor bytes go straight to the file
        self._handle.write(struct.pack("<Q", len(text)) + text)
        self._next = 0

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Append the next planned tensor (name, shape and dtype must match the plan)."""
        if self._next >= len(self._plan):
            raise ValueError(f"{self.path.name}: {name} is beyond the plan")
        planned = self._plan[self._next]
        if (name, tuple(tensor.shape), tensor.dtype) != planned:
            raise ValueError(f"{self.path.name}: expected {planned[0]} {list(planned[1])} {planned[2]} next, got "
                             f"{name} {list(tensor.shape)} {tensor.dtype}")
        for block in _contiguous_blocks(tensor.detach()):
            view = memoryview(block.reshape(-1).view(torch.uint8).numpy())
            while view:  # an unbuffered write may take part of the bytes
                view = view[self._handle.write(view):]
        self._next += 1

    def abort(self) -> None:
        """Stop after a failure: close and remove the partial file."""
        self._handle.close()
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        self._handle.close()
        if self._next != len(self._plan):
            missing = self._plan[self._next][0]
            raise ValueError(f"{self.path.name}: closed after {self._next} of {len(self._plan)} tensors "
                             f"({missing} not written)")

    def __enter__(self) -> "SafetensorsWriter":
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
