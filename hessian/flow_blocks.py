r"""Exact Q/K/V Hessian blocks of the attention layer of a particle flow (theory note hessian.md §2.12).

The layer. A trajectory of ``particles.simulate`` moves tokens x_1..x_n (rows of X, (n, d)) with the
velocity of one attention layer. At every chosen frame X(t) we take that same layer as a function of its
parameters (Q, K, V), with the run's beta and dynamics,

$$F(X; Q, K, V) = A\,X V^\top,\qquad A_{ij} = \frac{e^{\beta\langle Qx_i, Kx_j\rangle}}{Z_i},$$

Z_i = sum_k e^{beta <Q x_i, K x_k>} (SA, row softmax) or Z_i = n (USA): row i of F is the particle
velocity v_i before the projection P_{x_i} = I - x_i x_i^T. The projection is *not* part of the
differentiated function: it is a fixed linear map of the output at given X (it does not involve Q, K, V),
the authors' Euler scheme moves tokens with the unprojected v_i, and F is then exactly the single-head layer
of the Hessian note (§1.1) with W_Q = Q^T, W_K = K^T, W_V = V^T and score scale beta.

Parameters are ordered w = [vec_r Q, vec_r K, vec_r V] (row-major, P = 3 d^2; entry Q[p, a] has index
p d + a). Blocks of W_Q = Q^T differ from those of Q by a permutation inside each block, so Frobenius norms,
traces and eigenvalues are those of the note's blocks.

Losses (a documented choice; the curvature is that of l(w) = loss(F(X; w))):

- ``"target"``: ``||F - Y||_F^2 / (n d)``, Y a fixed N(0, 1) draw (n, d) per system (``random_target``),
  the same at every frame: the note's MSE with a target unrelated to the flow.
- ``"next"``: ``||F - (X(t_{k+1}) - X(t_k)) / (t_{k+1} - t_k)||_F^2 / (n d)``, i.e. the squared error of one
  explicit step X + Delta F against the next saved frame, divided by Delta^2: the layer as a predictor of
  the flow itself. Its residual is the radial part <x_i, v_i> x_i, which the flow removes (projection or
  renormalisation) and F keeps, plus the step error. The last frame has no next frame and is skipped.
- ``"energy"``: the interaction energy of the output configuration,
  ``E_beta(F) - 1/(2 beta) = (1/(2 beta n^2)) sum_ij (e^{beta <f_i, f_j>} - 1)`` (its beta -> 0 limit
  ``|sum_i f_i|^2 / (2 n^2)`` at beta = 0); the constant does not change the Hessian. The loss Hessian in F
  couples all rows, so H_o is J^T Lambda J with the explicit Jacobian (slower than the MSE losses).

Every block is computed from the attention moments of the note (§1.4, §2.2-2.3), written as sums over
queries of rank-one terms (one GEMM per block) and vmapped over all (frame, system) pairs. SA uses central
moments (M2_i = sum_j a_ij (x_j - m_i)(x_j - m_i)^T, m_i = sum_j a_ij x_j); USA, whose weights are not
normalised, the same formulas with raw moments (x_j in place of x_j - m_i): d a_ij = a_ij dT_ij and
d^2 a_ij = a_ij dT_ij^2. Both are tested against torch.func.hessian of l(w) and against the einsum
derivation of ``hessian.closed_form`` (attention "softmax" and "unnormalized"), to 1e-12
(tests/hessian/test_flow_blocks.py).

When every token sits at one point x, SA gives A = 11^T / n and x_j - m_i = 0, so M2 = M3 = 0 and every Q and
K block of H_o and H_f vanishes while H_o(V, V) = (2/(n d)) n I (x) x x^T stays (note §2.12); USA keeps its Q/K
curvature there (the weights e^{beta <Qx, Kx>}/n still depend on Q and K).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: parameter blocks, in the order of w = [vec_r Q, vec_r K, vec_r V]
BLOCKS = ("Q", "K", "V")
#: the six upper blocks of a symmetric (3 d^2, 3 d^2) matrix, in the order the kernels return them
PAIRS = (("Q", "Q"), ("Q", "K"), ("Q", "V"), ("K", "K"), ("K", "V"), ("V", "V"))


def _sum_outer(L: Tensor, R: Tensor, perm: tuple[int, int, int, int]) -> Tensor:
    """sum_i L_i[r, s] R_i[t, u] (one GEMM over the n queries), as the (d^2, d^2) block whose indices are
    ``perm`` of (r, s, t, u)."""
    n, d = L.shape[0], L.shape[-1]
    M = (L.reshape(n, d * d).T @ R.reshape(n, d * d)).reshape(d, d, d, d)
    return M.permute(perm).reshape(d * d, d * d)


_QQ = (0, 2, 1, 3)  # L[c, e] R[a, b] -> [(c, a), (e, b)]
_CROSS = (0, 2, 3, 1)  # L[c, b] R[a, e] -> [(c, a), (e, b)]
_KV_F = (2, 0, 3, 1)  # L[a, b] R[c, f] -> [(c, a), (f, b)]
_KV_O = (2, 0, 1, 3)  # L[a, f] R[c, b] -> [(c, a), (f, b)]


def _assemble(b: dict) -> Tensor:
    """The (3 d^2, 3 d^2) symmetric matrix from its six upper blocks ``{("Q", "K"): ..., ...}``."""
    return torch.cat(
        [
            torch.cat([b["Q", "Q"], b["Q", "K"], b["Q", "V"]], 1),
            torch.cat([b["Q", "K"].T, b["K", "K"], b["K", "V"]], 1),
            torch.cat([b["Q", "V"].T, b["K", "V"].T, b["V", "V"]], 1),
        ],
        0,
    )


def _split(H: Tensor, P: int) -> dict:
    """The six upper (P, P) blocks of a (3P, 3P) matrix."""
    span = {name: slice(i * P, (i + 1) * P) for i, name in enumerate(BLOCKS)}
    return {(r, c): H[span[r], span[c]] for r, c in PAIRS}


def _norms(b: dict) -> Tensor:
    """(3, 3) Frobenius norms of the Q/K/V blocks of a symmetric matrix given by its six upper blocks."""
    v = {k: torch.linalg.vector_norm(blk) for k, blk in b.items()}
    return torch.stack([torch.stack([v.get((r, c), v.get((c, r))) for c in BLOCKS]) for r in BLOCKS])


def _trace(b: dict) -> Tensor:
    return b["Q", "Q"].diagonal().sum() + b["K", "K"].diagonal().sum() + b["V", "V"].diagonal().sum()


def flow_hessian(
    X: Tensor, Q: Tensor, K: Tensor, V: Tensor, Y: Tensor, *, beta: float, dynamics: str = "SA", loss: str = "target"
) -> tuple[Tensor, Tensor]:
    """Exact (H_o, H_f) of ``l(Q, K, V) = loss(A X V^T)`` at one configuration (pure torch, vmappable).

    Args:
        X: (n, d) tokens as rows (any scale; the flow keeps them on the sphere).
        Q, K, V: (d, d) the layer's parameters.
        Y: (n, d) MSE target for "target" and "next" (ignored by "energy").
        beta: score scale (>= 0), also the inverse temperature of the "energy" loss.
        dynamics: "SA" (softmax) or "USA" (weights e^{T_ij} / n).
        loss: "target" or "next" (MSE ``||F - Y||^2 / (n d)``), or "energy" (see the module docstring).

    Returns:
        (H_o, H_f), each (3 d^2, 3 d^2) over [vec_r Q, vec_r K, vec_r V]; H = H_o + H_f. No validation.

    Example:
        >>> X = torch.nn.functional.normalize(torch.randn(6, 3, dtype=torch.float64), dim=1)
        >>> I = torch.eye(3, dtype=torch.float64)
        >>> H_o, H_f = flow_hessian(X, I, I, I, torch.zeros(6, 3, dtype=torch.float64), beta=1.0)
        >>> H_o.shape
        torch.Size([27, 27])
    """
    H_o, H_f = _blocks(X, Q, K, V, Y, beta=beta, dynamics=dynamics, loss=loss)
    return _assemble(H_o), _assemble(H_f)


def block_summary(X, Q, K, V, Y, *, beta, dynamics, loss, dense):
    """Per configuration: block norms (3 kinds, 3, 3), traces (3,), the six upper blocks of H and, if
    ``dense``, of H_o (assembled outside vmap by ``assemble_batched``: cheaper than a vmapped cat)."""
    H_o, H_f = _blocks(X, Q, K, V, Y, beta=beta, dynamics=dynamics, loss=loss)
    H = {k: H_o[k] + H_f[k] for k in PAIRS}
    norms = torch.stack([_norms(H), _norms(H_o), _norms(H_f)])
    trace = torch.stack([_trace(H), _trace(H_o), _trace(H_f)])
    out = (norms, trace, tuple(H[k] for k in PAIRS))
    return out + (tuple(H_o[k] for k in PAIRS),) if dense else out


def assemble_batched(blocks) -> Tensor:
    """(C, 3 P, 3 P) symmetric matrices from the six upper blocks, each (C, P, P), in ``PAIRS`` order."""
    C, P = blocks[0].shape[:2]
    out = torch.empty(C, 3 * P, 3 * P, dtype=blocks[0].dtype)
    span = {name: slice(i * P, (i + 1) * P) for i, name in enumerate(BLOCKS)}
    for (r, c), blk in zip(PAIRS, blocks):
        out[:, span[r], span[c]] = blk
        if r != c:
            out[:, span[c], span[r]] = blk.mT
    return out


def _blocks(X, Q, K, V, Y, *, beta, dynamics, loss):
    """The six upper blocks of H_o and of H_f, each a dict {("Q", "K"): (d^2, d^2), ...}."""
    n, d = X.shape
    q = X @ Q.T  # rows Q x_i
    k = X @ K.T
    T = beta * (q @ k.T)
    if dynamics == "USA":
        A = torch.exp(T) / n
        Xc = X  # raw moments
    else:
        A = torch.softmax(T, dim=-1)
        # central moments about the token mean: near a cluster x_j - mean is O(spread), computed directly
        # rather than as a difference of O(1) raw moments (which would lose (1/spread)^2 digits)
        Xc = X - X.mean(0)
    XXc = (Xc[:, :, None] * Xc[:, None, :]).reshape(n, d * d)
    m = A @ X
    F = m @ V.T
    S2 = (A @ XXc).reshape(n, d, d)  # sum_j a_ij y_j y_j^T, y = Xc
    if dynamics == "USA":
        mu = torch.zeros_like(X)
        M2 = S2
    else:
        mu = A @ Xc  # m_i - mean
        M2 = S2 - mu[:, :, None] * mu[:, None, :]
    if loss == "energy":
        E = torch.exp(beta * (F @ F.T))
        G = (E @ F) / n**2  # dl/df_i = (1/n^2) sum_j e_ij f_j
    else:
        c = 2.0 / (n * d)
        G = c * (F - Y)
    U = G @ V  # rows u_i = V^T g_i
    s = (M2 @ U[:, :, None])[:, :, 0]
    # M3_i[u_i] = sum_j a_ij <D_ij, u_i> D_ij D_ij^T, D_ij = y_j - mu_i, from raw moments about the mean
    W = A * (U @ Xc.T)
    S3u = (W @ XXc).reshape(n, d, d)
    s2u = (S2 @ U[:, :, None])[:, :, 0]
    mu_u = (mu * U).sum(1)[:, None, None]
    M3u = (
        S3u
        - s2u[:, :, None] * mu[:, None, :]
        - mu[:, :, None] * s2u[:, None, :]
        - mu_u * S2
        + 2.0 * mu_u * (mu[:, :, None] * mu[:, None, :])
    )
    xx = X[:, :, None] * X[:, None, :]
    qq = q[:, :, None] * q[:, None, :]
    xq = X[:, :, None] * q[:, None, :]
    VM2 = V @ M2  # (n, d, d): V M2_i
    KM2 = K @ M2
    b2 = beta * beta
    eye = torch.eye(d, dtype=X.dtype)
    P = d * d
    # functional part (note §2.3): H_f(V, V) = 0, F is linear in V
    KM3 = K @ M3u
    fQQ = _sum_outer(b2 * KM3 @ K.T, xx, _QQ)
    fKK = _sum_outer(qq, b2 * M3u, _QQ)
    fQK = _sum_outer(b2 * KM3, xq, _CROSS) + torch.kron(eye, beta * (X.T @ s))  # + T-functional term
    xg = X[:, :, None] * G[:, None, :]
    qg = q[:, :, None] * G[:, None, :]
    fQV = _sum_outer(beta * KM2, xg, _CROSS)
    fKV = _sum_outer(beta * M2, qg, _KV_F)
    H_f = {
        ("Q", "Q"): fQQ,
        ("Q", "K"): fQK,
        ("Q", "V"): fQV,
        ("K", "K"): fKK,
        ("K", "V"): fKV,
        ("V", "V"): torch.zeros(P, P, dtype=X.dtype),
    }
    if loss == "energy":
        H_o = _split(_outer_general(X, q, m, VM2, K, F, E, beta, n, d), P)
    else:
        R = VM2 @ K.T  # V M2_i K^T: dF_i/dQ = beta R_i (x) x_i^T
        RtVM2 = R.mT @ VM2  # K M2 V^T V M2
        xm = X[:, :, None] * m[:, None, :]
        qm = q[:, :, None] * m[:, None, :]
        QQ = _sum_outer(c * b2 * (R.mT @ R), xx, _QQ)
        KK = _sum_outer(qq, c * b2 * (VM2.mT @ VM2), _QQ)
        QK = _sum_outer(c * b2 * RtVM2, xq, _CROSS)
        QV = _sum_outer(c * beta * R.mT, xm, _QQ)
        KV = _sum_outer(c * beta * VM2.mT, qm, _KV_O)
        VV = torch.kron(eye, c * (m.T @ m))
        H_o = {("Q", "Q"): QQ, ("Q", "K"): QK, ("Q", "V"): QV, ("K", "K"): KK, ("K", "V"): KV, ("V", "V"): VV}
    return H_o, H_f


def _outer_general(X, q, m, VM2, K, F, E, beta, n, d):
    """H_o = J^T Lambda J for the energy loss, whose output Hessian Lambda couples all rows."""
    P = d * d
    eye = torch.eye(d, dtype=X.dtype)
    # Jacobian rows (i, g): Q[p, a] -> beta (V M2_i K^T)[g, p] x_ia;  K[p, a] -> beta (V M2_i)[g, a] q_ip;
    # V[f, a] -> delta_gf m_ia
    JQ = beta * (VM2 @ K.T)[:, :, :, None] * X[:, None, None, :]
    JK = beta * VM2[:, :, None, :] * q[:, None, :, None]
    JV = eye[None, :, :, None] * m[:, None, None, :]
    J = torch.cat([JQ.reshape(n * d, P), JK.reshape(n * d, P), JV.reshape(n * d, P)], 1)
    # Lambda[(i, a), (j, b)] = (1/n^2)[e_ij delta_ab + beta e_ij f_ja f_ib + delta_ij beta sum_l e_il f_la f_lb]
    Lam = E[:, None, :, None] * (eye[None, :, None, :] + beta * F.T[None, :, :, None] * F[:, None, None, :])
    diag = beta * torch.einsum("il,la,lb->iab", E, F, F)
    Lam = Lam + torch.eye(n, dtype=X.dtype)[:, None, :, None] * diag[:, :, None, :]
    Lam = Lam.reshape(n * d, n * d) / n**2
    return J.T @ (Lam @ J)
