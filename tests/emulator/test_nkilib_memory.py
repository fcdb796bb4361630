"""The conformance runner's memory guard decides from sizes alone (no big allocation here)."""
import numpy as np
import pytest

from nkilib_memory import (GB, address_space_bytes, array_bytes, estimated_need, growth_limit,
                           mem_available_bytes, too_large)

MEMINFO = "MemTotal:       24576000 kB\nMemFree:        20000000 kB\nMemAvailable:   10485760 kB\n"


def test_mem_available_is_read_in_bytes():
    assert mem_available_bytes(MEMINFO) == 10 * GB
    assert address_space_bytes("Name:\tpython\nVmSize:\t 2097152 kB\n") == 2 * GB
    with pytest.raises(ValueError, match="MemAvailable"):
        mem_available_bytes("MemTotal: 1 kB\n")


def test_a_case_that_fits_runs_and_one_over_the_free_memory_is_refused_with_both_sizes():
    assert too_large(need_bytes=7 * GB, available_bytes=10 * GB, reserve_bytes=2 * GB) is None
    assert too_large(need_bytes=8 * GB, available_bytes=10 * GB, reserve_bytes=2 * GB) is None
    why = too_large(need_bytes=9 * GB, available_bytes=10 * GB, reserve_bytes=2 * GB)
    assert why == "too large for this machine (needs ~9.0 GB, 10.0 GB available)"


def test_the_estimate_is_the_arrays_bytes_times_the_working_factor():
    arrays = {"q": np.zeros((2, 4, 8), np.float32), "scale": 0.5, "mask": np.zeros(16, np.int8)}
    held = array_bytes(arrays.values())
    assert held == 2 * 4 * 8 * 4 + 16  # the scalar counts nothing
    assert estimated_need(held, factor=8) == 8 * held
    # 4 GB of arrays (a 32768 x 32768 fp32 matrix) at the default factor is past a 24 GB machine
    assert too_large(estimated_need(4 * GB), available_bytes=22 * GB) is not None
    assert too_large(estimated_need(64 << 20), available_bytes=22 * GB) is None


def test_the_growth_limit_is_the_free_memory_beyond_the_reserve_and_never_below_today():
    assert growth_limit(address_space=3 * GB, available_bytes=10 * GB, reserve_bytes=2 * GB) == 11 * GB
    assert growth_limit(address_space=3 * GB, available_bytes=1 * GB, reserve_bytes=2 * GB) == 3 * GB
