"""Value checks of a checkpoint: NaN and Inf in the weights.

Headers are checked when a :class:`~.reader.CheckpointReader` opens the files (truncation, shapes,
dtypes, overlaps); values need the data. The loader checks each tensor as it reads it
(:func:`check_finite`), so a checkpoint with NaN weights stops before anything is compiled or
generated; ``qwen35-neuron inspect --scan-values`` reads every tensor once (:func:`scan_values`)
and lists every bad one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

from ..errors import CheckpointError
from .layout import DirectSource, Source
from .progress import ByteProgress
from .reader import CheckpointReader
from .safetensors_file import count_non_finite


@dataclass(frozen=True)
class ValueProblem:
    """One stored tensor holding NaN or Inf values."""

    file: str
    key: str
    bad: int
    numel: int

    def describe(self) -> str:
        return f"{self.file}: tensor {self.key} holds {self.bad} NaN/Inf values (of {self.numel})"


def value_error(reader: CheckpointReader, problem: ValueProblem) -> CheckpointError:
    return CheckpointError(
        f"{reader.model_dir / problem.file}: tensor {problem.key} holds {problem.bad} NaN/Inf values (of "
        f"{problem.numel}): the weights are corrupt; re-download {problem.file} (list every bad tensor with "
        f"`qwen35-neuron inspect --model {reader.model_dir} --scan-values`)", model_dir=str(reader.model_dir))


def scan_error(reader: CheckpointReader, problems: list[ValueProblem]) -> CheckpointError:
    """The closing line of ``inspect --scan-values``, after every bad tensor was listed: which files to
    re-download (not the command just run)."""
    files = sorted({problem.file for problem in problems})
    return CheckpointError(
        f"{reader.model_dir}: {len(problems)} tensor(s) hold NaN/Inf values, so the weights are corrupt: "
        f"re-download {', '.join(files)} (the tensors are listed above)", model_dir=str(reader.model_dir))


def check_finite(reader: CheckpointReader, source: Source, tensor: torch.Tensor) -> None:
    """Raise one error naming the stored tensor (and file) when ``tensor``, read from ``source``,
    holds NaN or Inf. Per-expert sources name the expert's own tensor."""
    if not count_non_finite(tensor):
        return
    if isinstance(source, DirectSource):
        parts = [(source.raw_key, tensor)]
    else:
        parts = []
        for slot, expert in enumerate(sorted(source.parts)):
            start = 0
            for proj in source.projections:
                part = source.parts[expert][proj]
                parts.append((part.raw_key, tensor[slot, start:start + part.shape[0]]))
                start += part.shape[0]
    for key, values in parts:
        bad = count_non_finite(values)
        if bad:
            raise value_error(reader, ValueProblem(reader.info(key).file, key, bad, values.numel()))


def scan_values(reader: CheckpointReader, keys: Iterable[str] | None = None,
                progress: ByteProgress | None = None) -> list[ValueProblem]:
    """Read every tensor (or ``keys``) once, one at a time, and list those holding NaN or Inf."""
    keys = list(reader.keys() if keys is None else keys)
    total = sum(reader.info(key).nbytes for key in keys)
    problems, done = [], 0
    for key in sorted(keys, key=lambda k: (reader.info(k).file, reader.info(k).offset)):  # file order
        info = reader.info(key)
        tensor = reader.get(key)
        bad = count_non_finite(tensor)
        if bad:
            problems.append(ValueProblem(info.file, key, bad, tensor.numel()))
        del tensor
        done += info.nbytes
        if progress is not None:
            progress(done, total)
    return problems
