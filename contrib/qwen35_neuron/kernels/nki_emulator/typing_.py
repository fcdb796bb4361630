"""`nki.typing`: annotation names kernels use (`nt.tensor`, `nt.mutable_tensor`).

Annotations only: `nt.tensor[128, 512]` and `nt.mutable_tensor` evaluate to the tensor type,
nothing is checked. nki-library's router_topk imports the same names from neuronx-cc's legacy
`neuronxcc.nki.typing`; the conformance harness maps that name here.
"""
from __future__ import annotations

from typing import Any

from .tensor import NkiTensor


class _Annotation:
    """`X` and `X[shape...]` both stand for the tensor type."""

    def __init__(self, name: str) -> None:
        self.__name__ = name

    def __getitem__(self, shape: Any) -> type:
        return NkiTensor

    def __repr__(self) -> str:
        return f"nki.typing.{self.__name__}"


tensor = _Annotation("tensor")
mutable_tensor = _Annotation("mutable_tensor")
