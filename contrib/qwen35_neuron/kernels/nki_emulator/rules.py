"""Every NKI rule the emulator enforces, in one place.

Each check raises `NkiRuleError` with the rule's name, the offending value and the limit,
so a kernel author can see at once what trn2 would reject. Sources: the NKI 0.6 API stubs
(aws-neuron-sdk nki/api/nki/isa, nki/api/nki/language) and /work/shared/notes/nki-facts.md.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

PMAX = 128                 # nl.tile_size.pmax
PSUM_BANK_BYTES = 2048     # one PSUM bank per partition (512 fp32)
PSUM_NUM_BANKS = 8         # banks per partition on trn2
GEMM_STATIONARY_FMAX = 128
GEMM_MOVING_FMAX = 512     # trn2 (NeuronCore-v3)
VECTOR_TRANSPOSE_MAX = 32  # VectorE nc_transpose handles <= [32, 32]
QUADRANT = 32


class NkiRuleError(Exception):
    """A kernel broke an NKI / trn2 rule. The message names the rule and the limit."""

    def __init__(self, rule: str, detail: str) -> None:
        self.rule = rule
        super().__init__(f"[{rule}] {detail}")


def fail(rule: str, detail: str) -> None:
    """Raise the rule error (a function so call sites read as one line)."""
    raise NkiRuleError(rule, detail)


def _where(instr: str, operand: str) -> str:
    return f"{instr}: {operand}" if operand else instr


# ---- allocation and layout ---------------------------------------------------------------
def check_partition_dim(n: int, where: str) -> None:
    """Dim 0 of an SBUF/PSUM tensor is the partition dim, at most 128."""
    if n > PMAX:
        fail("partition-dim", f"{where}: partition dim {n} > {PMAX} (nl.tile_size.pmax)")


def check_positive_shape(shape: Sequence[int], where: str) -> None:
    if len(shape) == 0 or any(int(s) <= 0 for s in shape):
        fail("shape", f"{where}: shape {tuple(shape)} must be non-empty with sizes >= 1")


def check_psum_tile(bytes_per_partition: int, where: str) -> None:
    """A PSUM tensor must fit one 2 KiB bank per partition."""
    if bytes_per_partition > PSUM_BANK_BYTES:
        fail("psum-tile-size", f"{where}: {bytes_per_partition} bytes per partition > "
             f"{PSUM_BANK_BYTES} (one PSUM bank, nl.tile_size.psum_bank_fmax_bytes)")


def check_psum_banks(in_use: int, where: str) -> None:
    if in_use > PSUM_NUM_BANKS:
        fail("psum-capacity", f"{where}: {in_use} live PSUM tensors need {in_use} banks > "
             f"{PSUM_NUM_BANKS} banks per partition (8 x 2 KiB)")


def check_sbuf_budget(in_use: int, budget: int, where: str) -> None:
    if in_use > budget:
        fail("sbuf-capacity", f"{where}: live SBUF {in_use} bytes per partition > budget "
             f"{budget} bytes per partition")


def check_psum_address(address: Any, where: str) -> None:
    if address is not None and int(address[1]) % PSUM_BANK_BYTES != 0:
        fail("psum-address", f"{where}: PSUM free offset {address[1]} is not a multiple of "
             f"{PSUM_BANK_BYTES} (PSUM tensors start on a bank boundary)")


def check_start_partition(start: int, count: int, where: str) -> None:
    """Compute engines may start only at 0 (>64 partitions), 0/64 (33-64) or 0/32/64/96."""
    if count > 64:
        allowed: tuple = (0,)
    elif count > 32:
        allowed = (0, 64)
    else:
        allowed = (0, 32, 64, 96)
    if start not in allowed:
        fail("start-partition", f"{where}: access of {count} partitions starts at partition "
             f"{start}; allowed starts {allowed}")


# ---- buffers and engines -----------------------------------------------------------------
def check_buffer(t: Any, allowed: Iterable[str], instr: str, operand: str) -> None:
    allowed = tuple(allowed)
    if t.buffer.value not in allowed:
        fail("buffer", f"{_where(instr, operand)} is in {t.buffer.value}; allowed: {', '.join(allowed)}")


def check_not_hbm(instr: str, **tensors: Any) -> None:
    """Compute instructions never take HBM operands; only DMA touches HBM."""
    for name, t in tensors.items():
        if t is not None and hasattr(t, "buffer") and t.buffer.value.endswith("hbm"):
            fail("hbm-operand", f"{instr}: {name} is in {t.buffer.value}; compute engines read "
                 "and write only SBUF/PSUM (move data with nisa.dma_copy)")


def check_no_psum(instr: str, engine: str, **tensors: Any) -> None:
    for name, t in tensors.items():
        if t is not None and hasattr(t, "buffer") and t.buffer.value == "psum":
            fail("engine-psum-access", f"{instr}: {name} is in PSUM but {engine} cannot access PSUM")


def check_one_psum_input(instr: str, **tensors: Any) -> None:
    names = [n for n, t in tensors.items() if t is not None and hasattr(t, "buffer")
             and t.buffer.value == "psum"]
    if len(names) > 1:
        fail("two-psum-inputs", f"{instr}: inputs {' and '.join(names)} are both in PSUM; "
             "at most one input may be in PSUM")


# ---- shapes --------------------------------------------------------------------------------
def check_same_partitions(instr: str, ref_name: str, ref_p: int, **parts: int) -> None:
    for name, p in parts.items():
        if p != ref_p:
            fail("partition-mismatch", f"{instr}: {name} has {p} partitions but {ref_name} has {ref_p}")


def check_same_free(instr: str, ref_name: str, ref_f: int, **frees: int) -> None:
    for name, f in frees.items():
        if f != ref_f:
            fail("shape-mismatch", f"{instr}: {name} has {f} elements per partition but "
                 f"{ref_name} has {ref_f}")


def check_column(instr: str, name: str, shape: Sequence[int], parts: int) -> None:
    """Scale/bias/operand tiles are [P, 1] vectors."""
    free = 1
    for s in shape[1:]:
        free *= int(s)
    if int(shape[0]) != parts or free != 1:
        fail("operand-shape", f"{instr}: {name} has shape {tuple(shape)}; expected ({parts}, 1)")


def check_number(instr: str, name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        fail("operand-type", f"{instr}: {name} must be a Python number or a tile, got {type(value).__name__}")


def check_op(instr: str, op: Any, *, alu: bool = False, act: bool = False, arity: int = 0) -> None:
    name = getattr(op, "name", None)
    if name is None:
        fail("operator", f"{instr}: op {op!r} is not an nl operator token")
    if alu and not op.alu:
        fail("operator", f"{instr}: nl.{name} is not a supported ISA ALU operator (NKI operator "
             "table); e.g. divide = reciprocal then multiply")
    if act and not op.act:
        fail("operator", f"{instr}: nl.{name} is not a ScalarE activation function "
             "(for negation use op=nl.copy with scale=-1.0)")
    if arity and op.arity != arity:
        fail("operator", f"{instr}: nl.{name} takes {op.arity} input(s); this slot needs {arity}")


def check_reduce_axes(instr: str, axes: Sequence[int], ndim: int) -> None:
    if 0 in axes:
        fail("reduce-axis", f"{instr}: axis 0 is the partition dim and cannot be reduced "
             "(use a ones-vector nc_matmul or a transpose)")
    want = list(range(ndim - len(axes), ndim))
    if sorted(axes) != want:
        fail("reduce-axis", f"{instr}: axes {tuple(axes)} must be the trailing free axes "
             f"ending at {ndim - 1}, e.g. {tuple(want)}")


# ---- TensorE -------------------------------------------------------------------------------
def check_matmul_dims(k_stat: int, k_mov: int, m: int, n: int, row_max: int, col_max: int) -> None:
    if k_stat != k_mov:
        fail("matmul-contraction", f"nc_matmul: stationary has {k_stat} partitions but moving has "
             f"{k_mov}; the contraction dim K is the partition dim of both")
    if k_stat > row_max:
        fail("matmul-contraction", f"nc_matmul: contraction K={k_stat} > {row_max} (partitions)")
    if m > col_max:
        fail("matmul-stationary-free", f"nc_matmul: stationary free size M={m} > {col_max} "
             "(nl.tile_size.gemm_stationary_fmax)")
    if n > GEMM_MOVING_FMAX:
        fail("matmul-moving-free", f"nc_matmul: moving free size N={n} > {GEMM_MOVING_FMAX} "
             "(nl.tile_size.gemm_moving_fmax on trn2)")


def check_transpose_size(engine: str, parts: int, free: int) -> None:
    limit = PMAX if engine == "Tensor" else VECTOR_TRANSPOSE_MAX
    if parts > limit or free > limit:
        fail("transpose-size", f"nc_transpose on {engine}E: input [{parts}, {free}] exceeds "
             f"[{limit}, {limit}]")


def check_dtype_equal(instr: str, a_name: str, a: Any, b_name: str, b: Any) -> None:
    if a != b:
        fail("dtype", f"{instr}: {a_name} dtype {a} must equal {b_name} dtype {b}")


def check_element_count(instr: str, n_dst: int, n_src: int) -> None:
    if n_dst != n_src:
        fail("element-count", f"{instr}: dst has {n_dst} elements but src has {n_src}")
