"""Every rule the emulator enforces fires, and names itself and its limit.

`TRIGGERS` maps each rule name to a minimal violation; `test_every_rule_has_a_trigger`
keeps the table in step with the rule names used in the emulator's source.
"""
from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest

from qwen35_neuron.kernels.nki_emulator import collectives as ncc
from qwen35_neuron.kernels.nki_emulator import NkiRuleError, fresh_program, isa as nisa, language as nl, run_kernel


def _psum(shape=(4, 4)):
    return nl.ndarray(shape, nl.float32, buffer=nl.psum)


def _sb(shape=(4, 4), dtype=nl.float32):
    return nl.ndarray(shape, dtype)


def _hbm(shape=(4, 4)):
    return nl.ndarray(shape, nl.float32, buffer=nl.shared_hbm)


def _over_budget(buffer, shape, count):
    """`count` tensors all written, then all read: live at once, checked when the program ends."""
    def trigger():
        with fresh_program() as ctx:
            keep = [nl.zeros(shape, nl.uint8 if buffer is nl.sbuf else nl.float32, buffer=buffer)
                    for _ in range(count)]
            out = nl.ndarray((1, 1), keep[0].dtype)
            for t in keep:
                nisa.tensor_copy(out, t[0:1, 0:1])
            ctx.memory.check()
    return trigger


def _two_program_mismatch():
    def k(x):
        return nl.ndarray((1 + nl.program_id(0), 1), nl.float32, buffer=nl.shared_hbm)
    run_kernel(k, np.ones(1, np.float32), lnc=2)


def _lone_sendrecv(x):
    t = nl.zeros((1, 1), nl.float32)
    if nl.program_id(0) == 0:
        nisa.sendrecv(src=t, dst=t, send_to_rank=1, recv_from_rank=1, pipe_id=0)


TRIGGERS = {
    "partition-dim": (lambda: nl.ndarray((256, 4), nl.float32), "256 > 128"),
    "shape": (lambda: nl.ndarray((4, 0), nl.float32), "sizes >= 1"),
    "psum-tile-size": (lambda: _psum((128, 1024)), "> 2048"),
    "psum-capacity": (_over_budget(nl.psum, (1, 1), 9), "> 8 banks"),
    "sbuf-capacity": (_over_budget(nl.sbuf, (1, 100 * 1024), 2), "budget 196608"),
    "address": (lambda: nl.ndarray((64, 4), nl.float32, address=(96, 0)), "outside sbuf"),
    "psum-address": (lambda: nl.ndarray((1, 1), nl.float32, buffer=nl.psum, address=(0, 4)), "2048"),
    "start-partition": (lambda: nisa.memset(_sb((8, 4))[1:3, :], 0.0), "starts at partition 1"),
    "buffer": (lambda: nisa.iota(_psum(), [[1, 4]]), "allowed: sbuf"),
    "hbm-operand": (lambda: nisa.memset(_hbm(), 0.0), "shared_hbm"),
    "engine-psum-access": (lambda: nisa.memset(_psum(), 0.0, engine=nisa.engine.gpsimd), "GpSimd"),
    "two-psum-inputs": (lambda: nisa.tensor_tensor(_sb(), _psum(), _psum(), nl.add), "at most one"),
    "partition-mismatch": (lambda: nisa.tensor_copy(_sb((4, 4)), _sb((2, 8))), "2 partitions"),
    "shape-mismatch": (lambda: nisa.tensor_copy(_sb((4, 4)), _sb((4, 5))), "5 elements"),
    "operand-shape": (lambda: nisa.tensor_scalar(_sb(), _sb(), nl.add, _sb((4, 2))), "expected (4, 1)"),
    "operand-type": (lambda: nisa.tensor_copy(_sb(), np.ones((4, 4))), "NKI tensor"),
    "operator": (lambda: nisa.tensor_tensor(_sb(), _sb(), _sb(), nl.divide), "ALU"),
    "reduce-axis": (lambda: nisa.tensor_reduce(_sb((1, 4)), nl.add, _sb(), axis=0), "axis 0"),
    "matmul-contraction": (lambda: nisa.nc_matmul(_psum(), _sb((4, 4)), _sb((8, 4))), "K"),
    "matmul-stationary-free": (lambda: nisa.nc_matmul(_psum((64, 4)), _sb((32, 64)), _sb((32, 4)),
                                                      tile_position=(0, 0), tile_size=(32, 32)), "M=64 > 32"),
    "matmul-moving-free": (lambda: nisa.nc_matmul(nl.ndarray((4, 600), nl.bfloat16, buffer=nl.psum),
                                                  _sb((4, 4)), _sb((4, 600))), "N=600 > 512"),
    "matmul-double-row": (lambda: nisa.nc_matmul(_psum((4, 4)), _sb((4, 4), nl.float8_e4m3), _sb((4, 4), nl.float8_e4m3),
                                                 perf_mode=nisa.matmul_perf_mode.double_row), "[K, 2, ...]"),
    "matmul-tiling": (lambda: nisa.nc_matmul(_psum(), _sb(), _sb(), tile_position=(0, 0)), "both"),
    "matmul-dst-shape": (lambda: nisa.nc_matmul(_psum((4, 2)), _sb(), _sb()), "[M=4, N=4]"),
    "matmul-dtype": (lambda: nisa.nc_matmul(_psum(), _sb(), _sb(dtype=nl.bfloat16)), "fp32/tf32"),
    "matmul-accumulate": (lambda: nisa.nc_matmul(_psum(), _sb(), _sb(), accumulate=True), "undefined"),
    "matmul-transpose": (lambda: nisa.nc_matmul(_psum(), _sb(), _sb(), is_transpose=True), "identity"),
    "transpose-size": (lambda: nisa.nc_transpose(_sb((64, 64)), _sb((64, 64)), engine=nisa.engine.vector), "[32, 32]"),
    "transpose-shape": (lambda: nisa.nc_transpose(_psum((4, 8)), _sb((4, 8))), "must be [8, 4]"),
    "dtype": (lambda: nisa.memset(_sb(dtype=nl.int32), 0.5), "must be an int"),
    "element-count": (lambda: nisa.dma_copy(_sb(), _hbm((4, 5))), "src has 20"),
    "index": (lambda: _sb()[0:5], "out of bounds"),
    "partition-stride": (lambda: _sb()[0:4:2], "step 2"),
    "partition-view": (lambda: _sb().reshape((2, 8)), "partition"),
    "reshape": (lambda: _sb((4, 3, 2)).permute((0, 2, 1)).reshape((4, 6)), "without a copy"),
    "permute": (lambda: _sb().permute((0, 0)), "not a permutation"),
    "broadcast": (lambda: _sb().broadcast(1, 8), "must be 1"),
    "squeeze": (lambda: _sb().squeeze_dim(1), "must be 1"),
    "view": (lambda: _sb((4, 3))[:, 0:3:2].view(nl.bfloat16), "cannot view"),
    "ap": (lambda: nisa.tensor_copy(_sb((4, 8)), _sb().ap([[4, 4], [1, 8]])), "outside storage"),
    "destination": (lambda: nisa.memset(_sb((4, 1)).broadcast(1, 3), 0.0), "read-only"),
    "engine": (lambda: nisa.tensor_copy(_sb(), _sb(), engine=nisa.engine.tensor), "not allowed"),
    "shuffle-mask": (lambda: nisa.nc_stream_shuffle(_sb(), _sb(), [0] * 8), "needs 32"),
    "pattern": (lambda: nisa.iota(_sb(), [[1, 3]]), "covers 3"),
    "dma-transpose": (lambda: nisa.dma_transpose(_sb((4, 8)), _hbm((4, 8))), "transposed"),
    "lnc-outputs": (_two_program_mismatch, "another"),
    "kernel-output": (lambda: run_kernel(lambda x: nl.ndarray((1, 1), nl.float32), np.ones(1, np.float32)),
                      "shared_hbm"),
    "spmd": (lambda: run_kernel(lambda x: None, np.ones(1, np.float32), lnc=0), ">= 1"),
    "argument": (lambda: run_kernel(lambda x: None, _FakeCudaTensor()), "CPU tensors"),
    "lnc-sync": (lambda: run_kernel(_lone_sendrecv, np.ones(1, np.float32), lnc=2), "ended without"),
    "lnc-rank": (lambda: nisa.sendrecv(_sb(), _sb(), send_to_rank=1, recv_from_rank=0, pipe_id=0), "0..0"),
    "sendrecv-size": (lambda: nisa.sendrecv(_sb((4, 300)), _sb((4, 300)), send_to_rank=0, recv_from_rank=0,
                                            pipe_id=0, dma_engine=nisa.dma_engine.gpsimd_dma), "1024 bytes"),
    "not-emulated": (lambda: nisa.activation(_sb(), nl.exp, _sb(), reduce_op=nl.add,
                                             reduce_cmd=nisa.reduce_cmd.load_reduce), "not emulated"),
    "collective": (lambda: ncc.all_reduce([_sb()], [_sb()], ncc.ReplicaGroup([[3]]), nl.add), "exactly one subgroup"),
    "register": (lambda: int(nisa.register_alloc()), "never written"),
    "search-size": (lambda: nisa.max8(_sb((4, 8)), _sb((4, 4))), "8 to 16384"),
}


class _FakeCudaTensor:
    """Looks like a torch tensor on a GPU (the emulator must refuse it)."""

    __module__ = "torch.fake"

    def detach(self):
        return self

    class device:  # noqa: N801
        type = "cuda"


@pytest.mark.parametrize("rule", sorted(TRIGGERS))
def test_rule_fires_with_its_name_and_limit(rule):
    trigger, text = TRIGGERS[rule]
    with pytest.raises(NkiRuleError) as err:
        trigger()
    assert err.value.rule == rule, str(err.value)
    assert str(err.value).startswith(f"[{rule}] ")
    assert text in str(err.value)


def test_every_rule_has_a_trigger():
    src = pathlib.Path(nisa.__file__).parent
    used = set()
    for path in src.glob("*.py"):
        used |= set(re.findall(r'fail\("([a-z0-9-]+)"', path.read_text()))
    assert used == set(TRIGGERS)
