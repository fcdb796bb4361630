"""The chunk math of the gated-delta-rule prefill kernel (see gdn_prefill.py), in lockstep.

Every function takes lists (one entry per key head or per value-head pack of a pipeline step)
and emits each instruction for all entries before the next instruction: the engines run their
streams in program order, so this interleaving is what lets one entry's dependency wait be
filled with another entry's work. Sub-kernels: no @nki.jit of their own.

Per pack, tiles are [*, pk, C] (pk value heads side by side on the free axis), so C x C
element-wise work of a pack is one instruction.
"""

import math

import nki.isa as nisa
import nki.language as nl

L2_EPS = 1e-6
GP = nisa.engine.gpsimd
ACT = nisa.engine.scalar


def key_work(raws, size, dk, mm_dt):
    """Per key head (raw [C, 2, dk] = [k | q] rows): unit rows (q also scaled by dk^-1/2),
    [k^T | q^T] in the matmul dtype and [k k^T | k q^T] in SBUF.
    Squares on GpSimd, sums on VectorE, rsqrt on ScalarE, scaling on GpSimd."""
    n = len(raws)
    sq = [nl.ndarray((size, 2, dk), dtype=nl.float32, buffer=nl.sbuf) for _ in range(n)]
    for i in range(n):
        nisa.tensor_tensor(dst=sq[i], data1=raws[i], data2=raws[i], op=nl.multiply, engine=GP)
    ss = [nl.ndarray((size, 2), dtype=nl.float32, buffer=nl.sbuf) for _ in range(n)]
    for i in range(n):
        nisa.tensor_reduce(dst=ss[i], op=nl.add, data=sq[i], axis=2)
    inv = [nl.ndarray((size, 2), dtype=nl.float32, buffer=nl.sbuf) for _ in range(n)]
    for i in range(n):
        nisa.activation(dst=inv[i], op=nl.rsqrt, data=ss[i], bias=L2_EPS)
    for i in range(n):
        nisa.tensor_scalar(dst=inv[i][:, 1:2], data=inv[i][:, 1:2], op0=nl.multiply,
                           operand0=1.0 / math.sqrt(dk))
    unit = [nl.ndarray((size, 2, dk), dtype=nl.float32, buffer=nl.sbuf) for _ in range(n)]
    for i in range(n):
        nisa.tensor_tensor(dst=unit[i], data1=raws[i],
                           data2=inv[i].reshape((size, 2, 1)).broadcast(2, dk), op=nl.multiply,
                           engine=GP)
    t_ps = [nl.ndarray((dk, 2, size), dtype=nl.float32, buffer=nl.psum) for _ in range(n)]
    for i in range(n):
        nisa.nc_transpose(t_ps[i][:, 0, :], unit[i][:, 0, :])
        nisa.nc_transpose(t_ps[i][:, 1, :], unit[i][:, 1, :])
    kq_t = [nl.ndarray((dk, 2, size), dtype=mm_dt, buffer=nl.sbuf) for _ in range(n)]
    for i in range(n):
        nisa.tensor_copy(dst=kq_t[i], src=t_ps[i], engine=ACT)
    prod = [nl.ndarray((size, 2, size), dtype=nl.float32, buffer=nl.psum) for _ in range(n)]
    for i in range(n):
        nisa.nc_matmul(prod[i].reshape((size, 2 * size)), kq_t[i][:, 0, :],
                       kq_t[i].reshape((dk, 2 * size)))
    prod_sb = [nl.ndarray((size, 2, size), dtype=nl.float32, buffer=nl.sbuf) for _ in range(n)]
    for i in range(n):
        nisa.tensor_copy(dst=prod_sb[i], src=prod[i])
    return [(unit[i][:, 0, :], kq_t[i][:, 1, :], prod_sb[i]) for i in range(n)]


def gates(cols, upper, size, dk):
    """Per pack (cols = (g [C, pk], beta [C, pk])): c = cumsum(g) per head, D (rows i) and
    D^T (rows j) as exp(c_i - c_j) straight from PSUM on ScalarE (masks come later, by
    select), e^c_i on every partition. Returns (c [C, pk], d, d_t, e_c, beta)."""
    n = len(cols)
    rows = max(size, dk)
    c_ps = [nl.ndarray((size, cols[i][0].shape[1]), dtype=nl.float32, buffer=nl.psum) for i in range(n)]
    crow = [nl.ndarray((rows, cols[i][0].shape[1], size), dtype=nl.float32, buffer=nl.psum)
            for i in range(n)]  # crow[m, r, i'] = c_i'
    for i in range(n):
        g_cols = cols[i][0]
        nisa.nc_matmul(c_ps[i], upper, g_cols, is_stationary_onezero=True)
        for r in range(g_cols.shape[1]):
            nisa.nc_matmul(crow[i][:, r, :], g_cols[:, r:r + 1].broadcast(1, rows), upper,
                           is_moving_onezero=True)
    c_cols = [nl.ndarray((size, 2, cols[i][0].shape[1]), dtype=nl.float32, buffer=nl.sbuf)
              for i in range(n)]  # [c | -c]
    for i in range(n):
        nisa.tensor_copy(dst=c_cols[i][:, 0, :], src=c_ps[i])
        nisa.tensor_scalar(dst=c_cols[i][:, 1, :], data=c_ps[i], op0=nl.multiply, operand0=-1.0)
    out = []
    for i in range(n):
        pk = cols[i][0].shape[1]
        d = nl.ndarray((size, pk, size), dtype=nl.float32, buffer=nl.sbuf)
        d_t = nl.ndarray((size, pk, size), dtype=nl.float32, buffer=nl.sbuf)
        for r in range(pk):
            nisa.activation(dst=d[:, r, :], op=nl.exp, data=crow[i][0:size, r, :], scale=-1.0,
                            bias=c_cols[i][:, 0, r:r + 1])
            nisa.activation(dst=d_t[:, r, :], op=nl.exp, data=crow[i][0:size, r, :],
                            bias=c_cols[i][:, 1, r:r + 1])
        e_c = nl.ndarray((dk, pk, size), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=e_c, op=nl.exp, data=crow[i][0:dk, :, :])
        out.append((c_cols[i][:, 0, :], d, d_t, e_c, cols[i][1]))
    return out


def operators(prods, gts, size, mm_dt):
    """Per pack: A = -beta_i (k k^T (.) D) strictly lower (rows i) and A^T for the doubling,
    intra^T[j, i] = k_j.q_i D_ij for i >= j."""
    n = len(gts)
    pks = [gts[i][1].shape[1] for i in range(n)]
    neg_beta = [nl.ndarray((size, pks[i]), dtype=nl.float32, buffer=nl.sbuf) for i in range(n)]
    a_full = [nl.ndarray((size, pks[i], size), dtype=nl.float32, buffer=nl.sbuf) for i in range(n)]
    for i in range(n):
        nisa.tensor_scalar(dst=neg_beta[i], data=gts[i][4], op0=nl.multiply, operand0=-1.0)
    for i in range(n):
        for r in range(pks[i]):
            nisa.scalar_tensor_tensor(dst=a_full[i][:, r, :], data=prods[i][:, 0, :],
                                      op0=nl.multiply, operand0=neg_beta[i][:, r:r + 1],
                                      op1=nl.multiply, operand1=gts[i][1][:, r, :])
    a = [nl.ndarray((size, pks[i], size), dtype=mm_dt, buffer=nl.sbuf) for i in range(n)]
    intra_full = [nl.ndarray((size, pks[i], size), dtype=nl.float32, buffer=nl.sbuf) for i in range(n)]
    intra_t = [nl.ndarray((size, pks[i], size), dtype=mm_dt, buffer=nl.sbuf) for i in range(n)]
    for i in range(n):  # A keeps j < i; intra^T keeps i >= j (rows j)
        nisa.affine_select(a[i], pattern=[[0, pks[i]], [-1, size]], channel_multiplier=1,
                           on_true_tile=a_full[i], on_false_value=0.0, cmp_op=nl.greater_equal,
                           offset=-1)
        nisa.tensor_tensor(dst=intra_full[i], data1=prods[i][:, 1:2, :].broadcast(1, pks[i]),
                           data2=gts[i][2], op=nl.multiply, engine=GP)
        nisa.affine_select(intra_t[i], pattern=[[0, pks[i]], [1, size]], channel_multiplier=-1,
                           on_true_tile=intra_full[i], on_false_value=0.0, cmp_op=nl.greater_equal)
    at_ps = [nl.ndarray((size, pks[i], size), dtype=mm_dt, buffer=nl.psum) for i in range(n)]
    for i in range(n):
        for r in range(pks[i]):
            nisa.nc_transpose(at_ps[i][:, r, :], a[i][:, r, :])
    a_t = [nl.ndarray((size, pks[i], size), dtype=mm_dt, buffer=nl.sbuf) for i in range(n)]
    for i in range(n):
        nisa.tensor_copy(dst=a_t[i], src=at_ps[i])
    return [(a[i], a_t[i], intra_t[i]) for i in range(n)]


def inverse_t(ops, eye, size, mm_dt):
    """W^T = (I - A)^-T of every head of every pack (ops[i] = (a, a_t, ...)), by doubling.

    With P_i = (A^T)^(2^i) and Q_i = A^(2^i): P_(i+1) = Q_i^T P_i and Q_(i+1) = P_i^T Q_i
    (TensorE computes stationary^T @ moving), M <- M + P_(i+1) M (the factors commute),
    M_0 = I + A^T. A^C = 0, so log2(C) factors are exact. One PSUM bank holds a round's
    [Q | P] of a pack (one eviction); rounds run round-major over the packs."""
    rounds = int(math.log2(size))
    eye_f = eye[0:size, 0:size]
    eye_mm = eye_f
    if mm_dt != nl.float32:
        eye_mm = nl.ndarray((size, size), dtype=mm_dt, buffer=nl.sbuf)
        nisa.tensor_copy(dst=eye_mm, src=eye_f)
    work = []
    for op in ops:
        a, a_t = op[0], op[1]
        pk = a.shape[1]
        m = nl.ndarray((size, pk, size), dtype=mm_dt, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=m, data1=eye_f.reshape((size, 1, size)).broadcast(1, pk),
                           data2=a_t, op=nl.add)
        work.append([a_t, a, m, pk])
    for rnd in range(1, rounds):
        last = rnd == rounds - 1
        n_mat = 1 if last else 2
        for i in range(len(work)):
            p, qm, m, pk = work[i]
            sq_ps = nl.ndarray((size, n_mat, pk, size), dtype=nl.float32, buffer=nl.psum)
            for r in range(pk):
                nisa.nc_matmul(sq_ps[:, 0, r, :], p[:, r, :], qm[:, r, :])
                if not last:
                    nisa.nc_matmul(sq_ps[:, 1, r, :], qm[:, r, :], p[:, r, :])
            sq = nl.ndarray((size, n_mat, pk, size), dtype=mm_dt, buffer=nl.sbuf)
            nisa.tensor_copy(dst=sq, src=sq_ps, engine=ACT)
            m_ps = nl.ndarray((size, pk, size), dtype=nl.float32, buffer=nl.psum)
            m_next = nl.ndarray((size, pk, size), dtype=mm_dt, buffer=nl.sbuf)
            if mm_dt == nl.float32:  # TensorE-bound: VectorE adds M
                for r in range(pk):
                    nisa.nc_matmul(m_ps[:, r, :], sq[:, 0, r, :], m[:, r, :])
                nisa.tensor_tensor(dst=m_next, data1=m, data2=m_ps, op=nl.add)
            else:  # VectorE-bound: M + P M accumulates in PSUM through the identity
                for r in range(pk):
                    nisa.nc_matmul(m_ps[:, r, :], eye_mm, m[:, r, :], accumulate=False)
                    nisa.nc_matmul(m_ps[:, r, :], sq[:, 0, r, :], m[:, r, :], accumulate=True)
                nisa.tensor_copy(dst=m_next, src=m_ps)
            work[i] = [sq[:, 1, :, :] if not last else p, sq[:, 0, :, :], m_next, pk]
    return [w[2] for w in work]


def step_operands(jobs, size, dk, dv, mm_dt):
    """Per pack (jobs[i] = (v_raw, key work, gates)): beta v, -beta e^c k, k e^(c_last - c)
    and (q e^c)^T in the matmul dtype (SBUF-only element-wise work: GpSimd)."""
    out = []
    for v_raw, kw, gt in jobs:
        k_hat, q_t = kw[0], kw[1]
        c, d, d_t, e_c, beta = gt
        pk = beta.shape[1]
        x_v = nl.ndarray((size, pk, dv), dtype=mm_dt, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=x_v, data1=v_raw, data2=beta.reshape((size, pk, 1)).broadcast(2, dv),
                           op=nl.multiply, engine=GP)
        coef = nl.ndarray((size, pk), dtype=nl.float32, buffer=nl.sbuf)  # -beta e^c
        nisa.activation(dst=coef, op=nl.exp, data=c)
        nisa.scalar_tensor_tensor(dst=coef, data=coef, op0=nl.multiply, operand0=-1.0,
                                  op1=nl.multiply, operand1=beta)
        k_rep = k_hat.reshape((size, 1, dk)).broadcast(1, pk)
        x_k = nl.ndarray((size, pk, dk), dtype=mm_dt, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=x_k, data1=k_rep, data2=coef.reshape((size, pk, 1)).broadcast(2, dk),
                           op=nl.multiply, engine=GP)
        k_end = nl.ndarray((size, pk, dk), dtype=mm_dt, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=k_end, data1=k_rep, data2=d_t[:, :, size - 1:size].broadcast(2, dk),
                           op=nl.multiply, engine=GP)
        qec = nl.ndarray((dk, pk, size), dtype=mm_dt, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=qec, data1=q_t.reshape((dk, 1, size)).broadcast(1, pk), data2=e_c,
                           op=nl.multiply, engine=GP)
        out.append((x_v, x_k, k_end, qec, e_c))
    return out


def state_step(states, sols, dims):
    """Per pack (sols[i] = (W^T, step operands, intra^T)): v_new = W beta v - W beta e^c k S,
    the chunk's output o = (q e^c) S + intra v_new (returned, SBUF fp32) and the new state
    e^(c_last) S + (k e^(c_last - c))^T v_new (returned)."""
    size, dk, dv, mm_dt = dims
    n = len(sols)
    pks = [states[i].shape[1] for i in range(n)]
    s_mm = states
    if mm_dt != nl.float32:
        s_mm = [nl.ndarray((dk, pks[i], dv), dtype=mm_dt, buffer=nl.sbuf) for i in range(n)]
        for i in range(n):
            nisa.tensor_copy(dst=s_mm[i], src=states[i], engine=ACT)
    wneg_ps = [nl.ndarray((dk, pks[i], size), dtype=nl.float32, buffer=nl.psum) for i in range(n)]
    for i in range(n):  # -(W beta e^c k)^T
        for r in range(pks[i]):
            nisa.nc_matmul(wneg_ps[i][:, r, :], sols[i][1][1][:, r, :], sols[i][0][:, r, :])
    wneg = [nl.ndarray((dk, pks[i], size), dtype=mm_dt, buffer=nl.sbuf) for i in range(n)]
    for i in range(n):
        nisa.tensor_copy(dst=wneg[i], src=wneg_ps[i])
    wneg_ps = None  # frees its PSUM banks
    vnew_ps = [nl.ndarray((size, pks[i], dv), dtype=nl.float32, buffer=nl.psum) for i in range(n)]
    for i in range(n):
        w_t, x_v = sols[i][0], sols[i][1][0]
        for r in range(pks[i]):
            nisa.nc_matmul(vnew_ps[i][:, r, :], w_t[:, r, :], x_v[:, r, :], accumulate=False)
            nisa.nc_matmul(vnew_ps[i][:, r, :], wneg[i][:, r, :], s_mm[i][:, r, :], accumulate=True)
    v_new = [nl.ndarray((size, pks[i], dv), dtype=mm_dt, buffer=nl.sbuf) for i in range(n)]
    for i in range(n):
        nisa.tensor_copy(dst=v_new[i], src=vnew_ps[i])
    vnew_ps = None
    o_ps = [nl.ndarray((size, pks[i], dv), dtype=nl.float32, buffer=nl.psum) for i in range(n)]
    s_ps = [nl.ndarray((dk, pks[i], dv), dtype=nl.float32, buffer=nl.psum) for i in range(n)]
    for i in range(n):
        k_end, qec, intra_t = sols[i][1][2], sols[i][1][3], sols[i][2]
        for r in range(pks[i]):
            nisa.nc_matmul(o_ps[i][:, r, :], qec[:, r, :], s_mm[i][:, r, :], accumulate=False)
            nisa.nc_matmul(o_ps[i][:, r, :], intra_t[:, r, :], v_new[i][:, r, :], accumulate=True)
            nisa.nc_matmul(s_ps[i][:, r, :], k_end[:, r, :], v_new[i][:, r, :])
    outs, new_states = [], []
    for i in range(n):
        o = nl.ndarray((size, pks[i], dv), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=o, src=o_ps[i], engine=ACT)
        outs.append(o)
    for i in range(n):
        e_c = sols[i][1][4]
        ns = nl.ndarray((dk, pks[i], dv), dtype=nl.float32, buffer=nl.sbuf)
        for r in range(pks[i]):
            nisa.scalar_tensor_tensor(dst=ns[:, r, :], data=states[i][:, r, :], op0=nl.multiply,
                                      operand0=e_c[:, r, size - 1:size], op1=nl.add,
                                      operand1=s_ps[i][:, r, :])
        new_states.append(ns)
    return outs, new_states
