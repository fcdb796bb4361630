"""Typed reads of JSON config fields: each value of the wrong kind or out of range is one error that
names the file and the field (``config.json field 'rms_norm_eps' must be a finite number > 0, got 0``).

Used for config.json, generation_config.json and preprocessor_config.json, so a nonsensical value
fails while the config is read, never as a NaN or a ZeroDivisionError deep in the model.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from ..errors import UnsupportedConfigError

_MISSING = object()


def _fail(where: str, key: str, wanted: str, value: Any) -> UnsupportedConfigError:
    return UnsupportedConfigError(f"{where} field {key!r} must be {wanted}, got {value!r}")


def _value(raw: Mapping[str, Any], key: str, default: Any, where: str) -> Any:
    value = raw.get(key, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise UnsupportedConfigError(f"{where} lacks the required field {key!r}")
        return default
    return value


def int_field(raw: Mapping[str, Any], key: str, default: Any = _MISSING, *, minimum: int | None = 1,
              where: str = "config.json") -> int:
    """An integer (JSON bools are not integers) >= ``minimum``; ``default`` when absent or null."""
    value = _value(raw, key, default, where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, key, "an integer", value)
    if minimum is not None and value < minimum:
        raise _fail(where, key, f">= {minimum}", value)
    return value


def float_field(raw: Mapping[str, Any], key: str, default: Any = _MISSING, *, minimum: float | None = None,
                maximum: float | None = None, exclusive_minimum: bool = True, where: str = "config.json") -> float:
    """A finite number within the bounds (``minimum`` exclusive by default: eps, theta, scales)."""
    value = _value(raw, key, default, where)
    low = "" if minimum is None else (f" > {minimum:g}" if exclusive_minimum else f" >= {minimum:g}")
    high = "" if maximum is None else f" <= {maximum:g}"
    wanted = "a finite number" + (f"{low} and{high}" if low and high else low or high)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UnsupportedConfigError(f"{where} has a malformed field {key!r}: {wanted} is expected, got {value!r}")
    if not math.isfinite(value):
        raise _fail(where, key, wanted, value)
    too_low = minimum is not None and (value <= minimum if exclusive_minimum else value < minimum)
    if too_low or (maximum is not None and value > maximum):
        raise _fail(where, key, wanted, value)
    return float(value)


def bool_field(raw: Mapping[str, Any], key: str, default: bool, *, where: str = "config.json") -> bool:
    """A JSON ``true``/``false`` (a string such as "false" would read as true: refused)."""
    value = _value(raw, key, default, where)
    if not isinstance(value, bool):
        raise _fail(where, key, "true or false", value)
    return value


def mapping_field(raw: Mapping[str, Any], key: str, *, where: str = "config.json") -> Mapping[str, Any]:
    """A JSON object; {} when absent or null."""
    value = _value(raw, key, {}, where)
    if not isinstance(value, Mapping):
        raise _fail(where, key, "a JSON object", value)
    return value


def int_list_field(raw: Mapping[str, Any], key: str, default: Any = _MISSING, *, minimum: int | None = 0,
                   where: str = "config.json") -> tuple[int, ...]:
    """A list of integers (a single integer is a list of one), each >= ``minimum``."""
    value = _value(raw, key, default, where)
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    bad = [v for v in items if isinstance(v, bool) or not isinstance(v, int) or (minimum is not None and v < minimum)]
    if bad:
        bound = "" if minimum is None else f" >= {minimum}"
        raise _fail(where, key, f"an integer{bound} or a list of them", value)
    return tuple(items)


def float_list_field(raw: Mapping[str, Any], key: str, default: Any, *, length: int | None = None,
                     positive: bool = False, where: str = "config.json") -> tuple[float, ...]:
    """A list of finite numbers (``positive``: each > 0), of ``length`` entries when given."""
    value = _value(raw, key, default, where)
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    ok = all(not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and (v > 0 or not positive)
             for v in items) and (length is None or len(items) == length)
    if not ok:
        count = f"{length} " if length is not None else ""
        raise _fail(where, key, f"a list of {count}finite{' positive' if positive else ''} numbers", value)
    return tuple(float(v) for v in items)
