"""NKI data types as numpy dtypes, and the rounding applied when an engine writes.

Real NKI dtypes are opaque tokens; here they are numpy dtype objects so that a kernel can
compare `t.dtype == nl.bfloat16` and so that host numpy arrays (which carry numpy dtypes)
mix freely with them. bf16 and fp8 come from `ml_dtypes`, whose float32 -> narrow casts
round to nearest even, which is what trn2 does by default.
"""
from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

float32 = np.dtype(np.float32)
# tf32 is stored as 4 bytes; the emulator computes it as fp32 (no mantissa truncation).
tfloat32 = np.dtype(np.float32)
float16 = np.dtype(np.float16)
bfloat16 = np.dtype(ml_dtypes.bfloat16)
float8_e4m3 = np.dtype(ml_dtypes.float8_e4m3)
float8_e4m3fn = np.dtype(ml_dtypes.float8_e4m3fn)
float8_e5m2 = np.dtype(ml_dtypes.float8_e5m2)
int8 = np.dtype(np.int8)
int16 = np.dtype(np.int16)
int32 = np.dtype(np.int32)
uint8 = np.dtype(np.uint8)
uint16 = np.dtype(np.uint16)
uint32 = np.dtype(np.uint32)
bool_ = np.dtype(np.bool_)

# MX packed types (4 values per element, trn3 microscaling): tokens only. Kernels may name them
# (nki-library's dtype tables do at import); allocating one is refused as not emulated.
float8_e4m3fn_x4 = np.dtype([("float8_e4m3fn_x4", np.uint32)])
float8_e5m2_x4 = np.dtype([("float8_e5m2_x4", np.uint32)])
float4_e2m1fn_x4 = np.dtype([("float4_e2m1fn_x4", np.uint16)])
MX_DTYPES = (float8_e4m3fn_x4, float8_e5m2_x4, float4_e2m1fn_x4)

FLOAT_DTYPES = (float32, float16, bfloat16, float8_e4m3, float8_e4m3fn, float8_e5m2)
INT_DTYPES = (int8, int16, int32, uint8, uint16, uint32)
ALL_DTYPES = FLOAT_DTYPES + INT_DTYPES + (bool_,)


def as_dtype(dtype: Any) -> np.dtype:
    """Normalise anything dtype-like (nl dtype, numpy dtype, torch dtype name) to np.dtype."""
    if isinstance(dtype, np.dtype):
        return dtype
    text = str(dtype)
    if text.startswith("torch."):
        text = text[len("torch."):]
        if text == "bool":
            text = "bool_"
    if text in _BY_NAME:
        return _BY_NAME[text]
    return np.dtype(dtype)


_BY_NAME = {
    "float8_e4m3fn_x4": float8_e4m3fn_x4, "float8_e5m2_x4": float8_e5m2_x4, "float4_e2m1fn_x4": float4_e2m1fn_x4,
    "float32": float32, "tfloat32": tfloat32, "float16": float16, "bfloat16": bfloat16,
    "float8_e4m3": float8_e4m3, "float8_e4m3fn": float8_e4m3fn, "float8_e5m2": float8_e5m2,
    "int8": int8, "int16": int16, "int32": int32, "uint8": uint8, "uint16": uint16,
    "uint32": uint32, "bool_": bool_, "bool": bool_,
}


def is_float(dtype: np.dtype) -> bool:
    """True for every floating type, including the ml_dtypes ones numpy calls 'V'."""
    return dtype in FLOAT_DTYPES


def is_int(dtype: np.dtype) -> bool:
    """True for signed/unsigned integers and bool."""
    return dtype in INT_DTYPES or dtype == bool_


def is_fp32_class(dtype: np.dtype) -> bool:
    """fp32 and tf32 (same numpy dtype): the matmul pairing rule treats them alike."""
    return dtype == float32


def uninit_fill(dtype: np.dtype) -> Any:
    """Value for fresh buffers, chosen so a read before write is visible.

    Floats get NaN (as the official NKI simulator). Ints get an extreme value (signed: min,
    unsigned: max) instead of the simulator's 4, because an extreme value is easier to spot.
    """
    if is_float(dtype):
        return np.nan
    if dtype == bool_:
        return True
    info = np.iinfo(dtype)
    return info.min if info.min < 0 else info.max


def round_to(values: Any, dtype: np.dtype) -> np.ndarray:
    """Convert computed values to `dtype` the way an engine write does.

    Floats: round to nearest even (numpy / ml_dtypes casts). Float -> int: round half to
    even, then saturate to the integer range (an assumption; trn2's exact float->int rule is
    not documented in our sources). Int -> int: saturate.
    """
    arr = np.asarray(values)
    if is_float(dtype):
        return arr.astype(np.float32).astype(dtype) if arr.dtype != dtype else arr
    if dtype == bool_:
        return arr.astype(np.float32) != 0
    info = np.iinfo(dtype)
    if arr.dtype.kind == "f" or is_float(arr.dtype):
        wide = np.rint(arr.astype(np.float64))
        wide = np.nan_to_num(wide, nan=0.0, posinf=info.max, neginf=info.min)
    else:
        wide = arr.astype(np.int64)
    return np.clip(wide, info.min, info.max).astype(dtype)


def itemsize(dtype: np.dtype) -> int:
    """Bytes per element (ml_dtypes report it correctly)."""
    return int(np.dtype(dtype).itemsize)


_SHORT_NAMES: dict = {}


def short_name(dtype: np.dtype) -> str:
    """Readable dtype name for error messages (cached: rule checks format it often)."""
    cached = _SHORT_NAMES.get(dtype)
    if cached is None:
        name = getattr(np.dtype(dtype), "name", str(dtype))
        cached = _SHORT_NAMES[dtype] = "bool_" if name == "bool" else name
    return cached
