"""Small helpers shared by our NKI kernels (plain functions called from inside @nki.jit kernels).

They are sub-kernels in the NKI sense: no @nki.jit of their own, traced inline. They import
the same `nki` the kernels use, so on a CPU they run on the emulator and on Neuron on the
real compiler.
"""

import nki.isa as nisa
import nki.language as nl

PMAX = 128  # partitions
PSUM_FMAX = 512  # fp32 elements per partition in one PSUM bank


def constant_identity(n, dtype):
    """[n, n] identity in SBUF built on GpSimd (memset + affine_select keeps p == f)."""
    ones = nl.ndarray((n, n), dtype=dtype, buffer=nl.sbuf)
    nisa.memset(ones, 1.0)
    eye = nl.ndarray((n, n), dtype=dtype, buffer=nl.sbuf)
    nisa.affine_select(eye, pattern=[[1, n]], channel_multiplier=-1, on_true_tile=ones,
                       on_false_value=0.0, cmp_op=nl.equal)
    return eye


def block_diag_select(dst, rows, blocks):
    """dst[p, n, :] = rows[p, :] where n == p, else 0: one GpSimd pass, no VectorE time.

    `rows` is [G, F]; `dst` is [G, blocks, F]. The result, sliced at [:, n, :], is a stationary
    operand whose only non-zero row is n - the way one matmul contracting over G picks row n.
    """
    parts, free = rows.shape[0], rows.shape[1]
    src = rows.reshape((parts, 1, free)).broadcast(1, blocks)
    nisa.affine_select(dst, pattern=[[1, blocks], [0, free]], channel_multiplier=-1,
                       on_true_tile=src, on_false_value=0.0, cmp_op=nl.equal)
