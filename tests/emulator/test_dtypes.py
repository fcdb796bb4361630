"""Dtype tokens and the rounding applied on engine writes."""
from __future__ import annotations

import ml_dtypes
import numpy as np

from qwen35_neuron.kernels.nki_emulator import dtypes as dt
from qwen35_neuron.kernels.nki_emulator import language as nl


def test_dtype_tokens_are_numpy_dtypes():
    assert nl.bfloat16 == np.dtype(ml_dtypes.bfloat16)
    assert nl.tfloat32 == nl.float32
    assert dt.as_dtype("torch.bfloat16") == nl.bfloat16
    assert dt.as_dtype("bool") == nl.bool_


def test_bf16_round_to_nearest_even():
    # 1 + 2^-8 is exactly halfway between bf16 1.0 and 1 + 2^-7: ties go to even (1.0).
    half = np.float32(1.0 + 2 ** -8)
    assert float(dt.round_to(np.array([half]), nl.bfloat16)[0]) == 1.0
    above = np.float32(1.0 + 2 ** -8 + 2 ** -12)
    assert float(dt.round_to(np.array([above]), nl.bfloat16)[0]) == 1.0 + 2 ** -7
    assert float(dt.round_to(np.array([np.float32(1.0 + 3 * 2 ** -8)]), nl.bfloat16)[0]) == 1.0 + 2 ** -6


def test_float_to_int_rounds_half_even_and_saturates():
    got = dt.round_to(np.array([2.5, 3.5, -2.5, 1e10, -1e10, np.nan], np.float32), nl.int8)
    assert got.tolist() == [2, 4, -2, 127, -128, 0]
    assert dt.round_to(np.array([300], np.int64), nl.uint8).tolist() == [255]


def test_itemsizes():
    assert [dt.itemsize(d) for d in (nl.float32, nl.bfloat16, nl.float8_e4m3, nl.int16)] == [4, 2, 1, 2]
