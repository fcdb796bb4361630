"""Run settings: how a model is executed (backend, parallelism, buckets, dtype).

Kept apart from :mod:`hf_config` because one checkpoint runs under many settings. Every
behaviour switch of the package is a field here, never an environment variable.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch

from ..errors import UnsupportedConfigError


class Backend(str, Enum):
    """Where the per-rank model code runs and how its parallel pieces are provided."""

    DENSE = "dense"  # CPU, one rank, plain torch
    SIMULATED_TP = "simulated-tp"  # CPU, R virtual ranks each holding its shard
    NKI_SIM = "nki-sim"  # CPU, one rank, DeltaNet/attention ops through the emulated NKI kernels
    NXD = "nxd"  # Trainium2 through NxD parallel layers


MOE_IMPLS = ("eager", "static")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class RunConfig:
    """How to run a model. Defaults suit CPU tests of tiny checkpoints."""

    backend: Backend = Backend.DENSE
    tp_degree: int = 1
    batch_size: int = 1
    context_buckets: tuple[int, ...] = (16, 32, 64, 128)
    max_seq_len: int = 256
    dtype: str = "float32"
    moe_impl: str = "eager"  # "eager": per-expert token groups (CPU speed); "static": traceable shapes
    moe_block_size: int = 128  # slots per expert block of the static MoE's dropless blockwise prefill form
    gdr_chunk_size: int = 64
    vision_buckets: tuple[int, ...] = (1024, 4096)  # patch counts the vision tower is built for (dense [N, N] attention: keep N <= 4096)

    def __post_init__(self) -> None:
        object.__setattr__(self, "backend", Backend(self.backend))
        object.__setattr__(self, "context_buckets", tuple(sorted(int(b) for b in self.context_buckets)))
        object.__setattr__(self, "vision_buckets", tuple(sorted(int(b) for b in self.vision_buckets)))
        if self.tp_degree < 1:
            raise UnsupportedConfigError(f"tp_degree must be >= 1, got {self.tp_degree}")
        if self.backend in (Backend.DENSE, Backend.NKI_SIM) and self.tp_degree != 1:
            raise UnsupportedConfigError(
                f"backend {self.backend.value!r} runs one rank: use tp_degree=1 or backend 'simulated-tp'"
            )
        if self.batch_size < 1:
            raise UnsupportedConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.context_buckets or self.context_buckets[0] < 1:
            raise UnsupportedConfigError(f"context_buckets must be positive lengths, got {self.context_buckets}")
        if self.max_seq_len < self.context_buckets[-1]:
            raise UnsupportedConfigError(
                f"max_seq_len {self.max_seq_len} is below the largest context bucket "
                f"{self.context_buckets[-1]}: raise max_seq_len or drop the bucket"
            )
        if self.dtype not in DTYPES:
            raise UnsupportedConfigError(f"dtype {self.dtype!r} is not supported (choose from {list(DTYPES)})")
        if self.moe_impl not in MOE_IMPLS:
            raise UnsupportedConfigError(f"moe_impl {self.moe_impl!r} is not one of {MOE_IMPLS}")
        if self.moe_block_size < 1:
            raise UnsupportedConfigError(f"moe_block_size must be >= 1, got {self.moe_block_size}")
        if self.gdr_chunk_size < 1 or self.gdr_chunk_size & (self.gdr_chunk_size - 1):
            raise UnsupportedConfigError(f"gdr_chunk_size must be a power of two, got {self.gdr_chunk_size}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]
