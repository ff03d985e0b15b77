r"""Curvature of the attention layer of a particle flow, frame by frame (theory note hessian.md §2.12).

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
d^2 a_ij = a_ij dT_ij^2. Both are tested against torch.func.hessian of l(w) (tests/hessian/test_flow.py).

When every token sits at one point x, SA gives A = 11^T / n and x_j - m_i = 0, so M2 = M3 = 0 and every Q and
K block of H_o and H_f vanishes while H_o(V, V) = (2/(n d)) n I (x) x x^T stays (note §2.12); USA keeps its Q/K
curvature there (the weights e^{beta <Qx, Kx>}/n still depend on Q and K).

Storage: ``along_trajectory(path)`` writes one H5MD observable per field, ``/observables/curvature.<loss>.<field>``
(``particles.io.write_observable`` takes no nested names), with the settings as attributes; ``read_curvature``
reads them back. Frames that were not computed (``every`` > 1) hold NaN (-1 for cluster counts).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import uuid
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.func import vmap

from ._checks import check_positive_int

__all__ = [
    "along_trajectory",
    "read_curvature",
    "FlowCurvature",
    "flow_hessian",
    "random_target",
    "cluster_power_law",
    "CLUSTER_EXPONENTS",
    "LOSSES",
]

LOSSES = ("target", "next", "energy")
KINDS = ("H", "H_o", "H_f")
BLOCKS = ("Q", "K", "V")
#: refuse P = 3 d^2 above this (dense (P, P) matrices per configuration); 4096 as in ``hessian.dense``
MAX_PARAMS = 4096
#: refuse to store dense matrices above this many bytes (both H and H_o over all frames and systems)
MAX_DENSE_BYTES = 1 << 30
# (P, P) float64 matrices alive per configuration in the kernel (blocks, H_o, H_f, H, eigen work space)
_MATRICES_PER_CONFIG = 8
_CHUNK_BYTES = 1 << 27
_PREFIX = "curvature"


# --------------------------------------------------------------------------- the kernel (pure, vmappable)


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
_PAIRS = (("Q", "Q"), ("Q", "K"), ("Q", "V"), ("K", "K"), ("K", "V"), ("V", "V"))


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
    return {(r, c): H[span[r], span[c]] for r, c in _PAIRS}


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


def _summary(X, Q, K, V, Y, *, beta, dynamics, loss, dense):
    """Per configuration: block norms (3 kinds, 3, 3), traces (3,), the six upper blocks of H and, if
    ``dense``, of H_o (assembled outside vmap by ``_assemble_batched``: cheaper than a vmapped cat)."""
    H_o, H_f = _blocks(X, Q, K, V, Y, beta=beta, dynamics=dynamics, loss=loss)
    H = {k: H_o[k] + H_f[k] for k in _PAIRS}
    norms = torch.stack([_norms(H), _norms(H_o), _norms(H_f)])
    trace = torch.stack([_trace(H), _trace(H_o), _trace(H_f)])
    out = (norms, trace, tuple(H[k] for k in _PAIRS))
    return out + (tuple(H_o[k] for k in _PAIRS),) if dense else out


def _assemble_batched(blocks) -> Tensor:
    """(C, 3 P, 3 P) symmetric matrices from the six upper blocks, each (C, P, P), in ``_PAIRS`` order."""
    C, P = blocks[0].shape[:2]
    out = torch.empty(C, 3 * P, 3 * P, dtype=blocks[0].dtype)
    span = {name: slice(i * P, (i + 1) * P) for i, name in enumerate(BLOCKS)}
    for (r, c), blk in zip(_PAIRS, blocks):
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


def random_target(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """The fixed target of the "target" loss: i.i.d. N(0, 1) of ``shape`` ([batch,] n, d), float64."""
    return np.random.default_rng(seed).standard_normal(shape)


# --------------------------------------------------------------------------- driver: frames, chunks, HDF5


@dataclasses.dataclass(frozen=True, eq=False)
class FlowCurvature:
    """Curvature of the flow's attention layer at the chosen frames of a trajectory.

    Shapes: F chosen frames, B systems (no B axis for an unbatched trajectory), P = 3 d^2.

    Attributes:
        ts: (F,) times of the frames.
        frames: (F,) int64 indices of the frames in the trajectory.
        norms: (F, [B,] 3, 3, 3) Frobenius norms: ``norms[..., k, r, c]`` is block (r, c) of
            kind k, kinds ``KINDS = ("H", "H_o", "H_f")``, blocks ``BLOCKS = ("Q", "K", "V")``.
        trace: (F, [B,] 3) traces of H, H_o, H_f.
        top_eigenvalue: (F, [B,]) largest eigenvalue of H (exact: LAPACK ``dsyevr`` for that one eigenvalue),
            or None.
        H, H_o: (F, [B,] P, P) dense matrices (``dense=True``) or None; H_f = H - H_o.
        sigma_eigenvalues: (F, [B,] d) eigenvalues of Sigma_xx = X^T X / n, decreasing (squared singular
            values of X / sqrt(n): accurate far below the 1e-16 floor of ``particles.token_covariance``).
        cluster_count: (F, [B,]) single-linkage clusters at <x_i, x_j> > 1 - 1e-3.
        loss: "target", "next" or "energy".
        settings: dict of the settings (the HDF5 attributes).
    """

    ts: np.ndarray
    frames: np.ndarray
    norms: np.ndarray
    trace: np.ndarray
    top_eigenvalue: Any
    H: Any
    H_o: Any
    sigma_eigenvalues: np.ndarray
    cluster_count: np.ndarray
    loss: str
    settings: dict

    def block_norm(self, kind: str, row: str, col: str | None = None) -> np.ndarray:
        """(F, [B,]) Frobenius norm of block (row, col) (default (row, row)) of ``kind`` in KINDS."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        for name, value in (("row", row), ("col", row if col is None else col)):
            if value not in BLOCKS:
                raise ValueError(f"{name} must be one of {BLOCKS}, got {value!r}")
        col = row if col is None else col
        return self.norms[..., KINDS.index(kind), BLOCKS.index(row), BLOCKS.index(col)]


def along_trajectory(
    traj,
    *,
    loss: str = "target",
    every: int = 1,
    dense: bool = False,
    eigenvalues: bool = True,
    target_seed: int = 0,
    write: bool | None = None,
    overwrite: bool = False,
    chunk_size: int | None = None,
    progress: bool = False,
    threads: int | None = 1,
    max_params: int = MAX_PARAMS,
    max_dense_bytes: int = MAX_DENSE_BYTES,
) -> FlowCurvature:
    r"""Hessian of the flow's own attention layer w.r.t. (Q, K, V) at every ``every``-th frame.

    At frame X(t) (each system of a batch with its own Q, K, V) the differentiated function is
    ``l(Q, K, V) = loss(F)``, ``F = A(X) X V^T`` the unprojected velocity of the run's dynamics (SA or USA)
    with the run's beta (see the module docstring for the exact definition and the three losses). Exact
    closed forms, vmapped over all (frame, system) pairs of a chunk.

    Main arguments:
        traj: a ``particles.Trajectory`` or the path of a stored run (``particles.load``).
        loss: "target" (MSE to a fixed N(0, 1) target), "next" (MSE of one step to the next frame) or
            "energy" (interaction energy of the output).
        every: use frames 0, every, 2 every, ... and the last one ("next": all but the last frame).

    Other arguments:
        dense: also return (and store) the dense H and H_o per frame and system; refused above
            ``max_dense_bytes``.
        eigenvalues: compute the top eigenvalue of H (exact, LAPACK ``dsyevr`` restricted to the largest
            eigenvalue, single-threaded through threadpoolctl when installed, else ``torch.linalg.eigvalsh``:
            the same number to rounding). About half of the run time at d = 8.
        target_seed: seed of the fixed target of "target" (``random_target``).
        write: store the result in the trajectory file under ``/observables/curvature.<loss>.<field>``; None
            (default) writes when ``traj`` is a path.
        overwrite: replace stored results of the same loss.
        chunk_size: configurations (frames x systems) per vmapped call; None: ~128 MiB of work space.
        progress: show a progress bar.
        threads: torch intra-op threads during the call (restored afterwards); None keeps the current
            setting. 1 by default: the matrices of one configuration are small, and on shared cores threaded
            LAPACK (eigvalsh) was measured 10-300x slower than one thread. Results do not depend on it.
        max_params: refuse P = 3 d^2 above this.
        max_dense_bytes: refuse ``dense`` output above this many bytes.

    Returns:
        ``FlowCurvature``.

    Raises:
        TypeError, ValueError: bad arguments, naming the argument.
        FileExistsError: results of this loss are stored and ``overwrite`` is False.
        RuntimeError: a non-finite curvature (USA weights overflow), with the frame and time.

    Example:
        >>> traj = particles.simulate(particles.sample_sphere(16, 3, seed=0), beta=1.0, t_max=10.0, dt=0.1)
        >>> curv = along_trajectory(traj)
        >>> curv.block_norm("H_o", "Q").shape
        (101,)
    """
    import particles
    from particles import Trajectory

    path = None
    if isinstance(traj, (str, os.PathLike)):
        path = traj
        traj = particles.load(traj)
    elif not isinstance(traj, Trajectory):
        raise TypeError(f"traj must be a particles.Trajectory or the path of a stored run, got {type(traj).__name__}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    every = _check_int("every", every, 1)
    target_seed = _check_int("target_seed", target_seed, 0)
    max_params = _check_int("max_params", max_params, 1)
    if threads is not None:
        threads = _check_int("threads", threads, 1)
    max_dense_bytes = _check_int("max_dense_bytes", max_dense_bytes, 0)
    for name, value in (
        ("dense", dense),
        ("eigenvalues", eigenvalues),
        ("overwrite", overwrite),
        ("progress", progress),
    ):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    if write is None:
        write = path is not None
    elif not isinstance(write, bool):
        raise TypeError(f"write must be a bool or None, got {type(write).__name__} {write!r}")
    if write and path is None:
        path = getattr(traj.xs, "path", None)
        if path is None:
            raise ValueError(
                "write=True needs a stored run: pass its path (or a Trajectory from particles.load), "
                "got an in-memory Trajectory; save it first with particles.io.save"
            )

    params = traj.params
    shape = tuple(traj.xs.shape)
    batched = len(shape) == 4
    B = shape[1] if batched else 1
    n, d = shape[-2:]
    P = 3 * d * d
    if P > max_params:
        raise ValueError(
            f"the (Q, K, V) Hessian has P = 3 d^2 = {P} parameters for d = {d}, above max_params = "
            f"{max_params}; raise max_params (each configuration needs several {P}x{P} matrices)"
        )
    m = len(traj.ts)
    frames = np.unique(np.r_[np.arange(0, m, every), m - 1])
    if loss == "next":
        if m < 2:
            raise ValueError(f"loss='next' needs at least 2 frames, the trajectory has {m}")
        frames = frames[frames < m - 1]
    F = len(frames)
    stored_bytes = 2 * m * B * P * P * 8
    if dense and stored_bytes > max_dense_bytes:
        raise ValueError(
            f"dense=True would store H and H_o for {m} frames x {B} systems at P = {P}: "
            f"{stored_bytes / 2**20:.0f} MiB, above max_dense_bytes = {max_dense_bytes / 2**20:.0f} MiB; "
            f"use every > 1 with fewer frames, raise max_dense_bytes, or dense=False"
        )
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_BYTES // (_MATRICES_PER_CONFIG * P * P * 8))
    chunk_size = _check_int("chunk_size", chunk_size, 1)
    frames_per_chunk = max(1, chunk_size // B)

    QKV = [_weights(getattr(params, name), B, d) for name in BLOCKS]
    Y_target = torch.from_numpy(random_target((B, n, d), target_seed)) if loss == "target" else None
    kernel = vmap(
        functools.partial(_summary, beta=float(params.beta), dynamics=params.dynamics, loss=loss, dense=dense)
    )
    ts = np.asarray(traj.ts, dtype=np.float64)
    out = {"norms": [], "trace": [], "top_eigenvalue": [], "H": [], "H_o": []}
    sig, counts = [], []
    from tqdm.auto import tqdm

    chunks = [frames[k : k + frames_per_chunk] for k in range(0, F, frames_per_chunk)]
    with _torch_threads(threads):
        for idx in tqdm(chunks, desc=f"curvature ({loss})", unit="chunk", disable=not progress):
            _chunk(
                idx,
                traj,
                batched,
                ts,
                n,
                d,
                B,
                P,
                loss,
                Y_target,
                QKV,
                kernel,
                eigenvalues,
                dense,
                params,
                out,
                sig,
                counts,
            )

    def cat(parts):
        if not parts:
            return None
        a = np.concatenate(parts)
        return a if batched else a[:, 0]

    settings = dict(
        loss=loss,
        dynamics=params.dynamics,
        beta=float(params.beta),
        every=every,
        frames=frames.astype(np.int64),
        target_seed=target_seed,
        n=n,
        d=d,
        systems=B,
        function=(
            "l(Q, K, V) = loss(F), F = A X V^T, A_ij = exp(beta <Q x_i, K x_j>) / Z_i (SA: softmax, USA: n); "
            "unprojected velocity, no residual"
        ),
        parameters="[vec_r Q, vec_r K, vec_r V] (row-major)",
        kinds=",".join(KINDS),
        blocks=",".join(BLOCKS),
        loss_definition=_LOSS_DOC[loss],
        eigenvalues="largest eigenvalue of H (dsyevr)" if eigenvalues else "not computed",
        # ties the fields of one call together: a rewrite without dense=True leaves older dense fields behind
        call_id=uuid.uuid4().hex,
    )
    result = FlowCurvature(
        ts=ts[frames],
        frames=frames.astype(np.int64),
        norms=cat(out["norms"]),
        trace=cat(out["trace"]),
        top_eigenvalue=cat(out["top_eigenvalue"]),
        H=cat(out["H"]),
        H_o=cat(out["H_o"]),
        sigma_eigenvalues=cat([s.reshape(len(s), B, d) for s in sig]),
        cluster_count=cat([c.reshape(len(c), B) for c in counts]),
        loss=loss,
        settings=settings,
    )
    if write:
        _write(path, result, m, overwrite)
    return result


_LOSS_DOC = {
    "target": "||F - Y||_F^2 / (n d), Y ~ N(0, 1) (n, d) per system from target_seed, fixed over frames",
    "next": "||F - (X(t_k+1) - X(t_k)) / (t_k+1 - t_k)||_F^2 / (n d): one explicit step against the next frame, / step^2",
    "energy": "E_beta(F) - 1/(2 beta) = sum_ij (exp(beta <f_i, f_j>) - 1) / (2 beta n^2) (beta = 0: |sum f_i|^2 / (2 n^2))",
}
_FIELDS = ("norms", "trace", "top_eigenvalue", "H", "H_o", "sigma_eigenvalues", "cluster_count")


def _write(path, result: FlowCurvature, m: int, overwrite: bool) -> None:
    """One observable per field, ``curvature.<loss>.<field>``, (m, ...) with NaN (-1 for counts) at frames
    that were not computed; the settings (with a ``call_id``) are the attributes of every one of them."""
    from particles import io

    names = {f: f"{_PREFIX}.{result.loss}.{f}" for f in _FIELDS}
    if not overwrite:
        have = io.info(path)["observables"]
        clash = [nm for nm in names.values() if nm in have]
        if clash:
            raise FileExistsError(f"{path} already holds {clash}; pass overwrite=True to replace them")
    for field in _FIELDS:
        value = getattr(result, field)
        if value is None:
            continue
        full = np.full(
            (m,) + value.shape[1:],
            -1 if field == "cluster_count" else np.nan,
            dtype=np.int64 if field == "cluster_count" else np.float64,
        )
        full[result.frames] = value
        io.write_observable(path, names[field], full, attrs=result.settings, overwrite=True)


def read_curvature(path, loss: str = "target") -> FlowCurvature:
    """Read back what ``along_trajectory(path, loss=loss)`` stored in a trajectory file.

    Args:
        path: the trajectory file.
        loss: which stored loss.

    Returns:
        ``FlowCurvature`` at the stored frames (``particles.load(path)`` gives the trajectory itself).

    Raises:
        KeyError: no curvature of that loss in the file (the message lists the stored observables).
    """
    from particles import io

    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    have = io.info(path)["observables"]
    name = f"{_PREFIX}.{loss}.norms"
    if name not in have:
        raise KeyError(f"no curvature for loss {loss!r} in {path}; stored observables: {have}")
    first = io.read_observable(path, name)
    settings = dict(first.attrs)
    frames = np.asarray(settings["frames"], dtype=np.int64)
    settings["frames"] = frames
    fields = {}
    for field in _FIELDS:
        nm = f"{_PREFIX}.{loss}.{field}"
        obs = first if nm == name else io.read_observable(path, nm) if nm in have else None
        # fields left over from an earlier call (other call_id) are not part of this result
        fields[field] = (
            obs.value[frames] if obs is not None and obs.attrs.get("call_id") == settings["call_id"] else None
        )
    return FlowCurvature(ts=first.time[frames], frames=frames, loss=loss, settings=settings, **fields)


def _top_eigenvalues(H: Tensor) -> np.ndarray:
    """Largest eigenvalue of each (P, P) matrix of the (C, P, P) stack, exactly.

    LAPACK dsyevr for the one eigenvalue (index P) needs the tridiagonal reduction but no full spectrum:
    measured 2x faster than ``torch.linalg.eigvalsh`` at P = 192. scipy's OpenBLAS must run on one thread
    (threaded, it was measured 10x slower on shared cores), which only threadpoolctl can impose at run time;
    without it, torch's eigvalsh.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return torch.linalg.eigvalsh(H)[:, -1].numpy()
    import scipy.linalg

    P = H.shape[-1]
    with threadpool_limits(1, user_api="blas"):
        return np.array(
            [
                scipy.linalg.eigh(
                    a, eigvals_only=True, subset_by_index=[P - 1, P - 1], driver="evr", check_finite=False
                )[0]
                for a in H.numpy()
            ]
        )


def _chunk(
    idx, traj, batched, ts, n, d, B, P, loss, Y_target, QKV, kernel, eigenvalues, dense, params, out, sig, counts
):
    """Curvature at frames ``idx`` of every system, appended to ``out``, ``sig``, ``counts``."""
    import particles

    xs = _frames(traj.xs, idx, batched)  # (f, B, n, d) float64
    # squared singular values of X / sqrt(n): the eigenvalues of Sigma_xx with absolute error ~1e-16 sigma_1
    # on sigma_k, not on lambda_k, so a cluster of spread 1e-10 still has its lambda_2 ~ 1e-20 resolved
    sig.append(np.linalg.svd(xs, compute_uv=False) ** 2 / n)
    counts.append(particles.count_clusters(xs))
    X = torch.from_numpy(xs).reshape(-1, n, d)
    if loss == "target":
        Y = Y_target.expand(len(idx), B, n, d).reshape(-1, n, d)
    elif loss == "next":
        step = (ts[idx + 1] - ts[idx])[:, None, None, None]
        Y = torch.from_numpy((_frames(traj.xs, idx + 1, batched) - xs) / step).reshape(-1, n, d)
    else:
        Y = torch.zeros_like(X)
    Q, K, V = (M.expand(len(idx), B, d, d).reshape(-1, d, d) for M in QKV)
    res = kernel(X, Q, K, V, Y)
    if not all(bool(torch.isfinite(r).all()) for r in res[:2]):
        bad = int(np.flatnonzero(~np.isfinite(res[0].reshape(len(idx), -1).numpy()).all(1))[0])
        raise RuntimeError(
            f"non-finite curvature at frame {idx[bad]} (t = {ts[idx[bad]]:g}) with beta = "
            f"{params.beta:g}, dynamics = {params.dynamics!r} (USA weights e^(beta <Qx, Kx>) "
            f"overflow at large beta)"
        )
    out["norms"].append(res[0].reshape(len(idx), B, 3, 3, 3).numpy())
    out["trace"].append(res[1].reshape(len(idx), B, 3).numpy())
    H = _assemble_batched(res[2]) if eigenvalues or dense else None
    if eigenvalues:
        out["top_eigenvalue"].append(_top_eigenvalues(H).reshape(len(idx), B))
    if dense:
        out["H"].append(H.reshape(len(idx), B, P, P).numpy())
        out["H_o"].append(_assemble_batched(res[3]).reshape(len(idx), B, P, P).numpy())


@contextlib.contextmanager
def _torch_threads(threads):
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_int(name, value, low):
    # NumPy integers too (frame indices and the like); the shared check takes Python ints.
    return check_positive_int(int(value) if isinstance(value, np.integer) else value, name, minimum=low)


def _weights(M, B, d) -> Tensor:
    """Q, K or V of the run as (B, d, d) float64 (None = identity, (d, d) = shared)."""
    if M is None:
        return torch.eye(d, dtype=torch.float64).expand(B, d, d)
    M = torch.as_tensor(np.asarray(M, dtype=np.float64))
    return M.expand(B, d, d) if M.ndim == 2 else M


def _frames(xs, idx, batched) -> np.ndarray:
    """Frames ``idx`` of a (possibly lazy) trajectory as (f, B, n, d) float64."""
    x = np.asarray(xs[np.asarray(idx)], dtype=np.float64)
    return x if batched else x[:, None]


# --------------------------------------------------------------------------- the power law near one cluster

#: Exponent p of ``block norm ~ lambda_2(Sigma_xx)^p`` as one cluster tightens (spread e, lambda_2 ~ e^2):
#: M2 ~ e^2, M3 ~ e^3 (note §2.12), so H_o(Q/K, Q/K) ~ M2^2, H_o(Q/K, V) ~ M2, H_f(Q/K, Q/K) ~ M3 except the
#: T-functional term of H_f(Q, K) ~ M2 u; the V block keeps a finite limit. For a generic residual direction.
CLUSTER_EXPONENTS = {
    "H_o": {("Q", "Q"): 2.0, ("K", "K"): 2.0, ("Q", "K"): 2.0, ("Q", "V"): 1.0, ("K", "V"): 1.0, ("V", "V"): 0.0},
    "H_f": {("Q", "Q"): 1.5, ("K", "K"): 1.5, ("Q", "K"): 1.0, ("Q", "V"): 1.0, ("K", "V"): 1.0},
    "H": {("Q", "Q"): 1.5, ("K", "K"): 1.5, ("Q", "K"): 1.0, ("Q", "V"): 1.0, ("K", "V"): 1.0, ("V", "V"): 0.0},
}


def cluster_power_law(curv: FlowCurvature, *, lam_max: float = 1e-4, lam_min: float = 1e-26) -> list[dict]:
    """Least-squares slopes of log(block norm) against log(lambda_2(Sigma_xx)) near one cluster.

    Points: every (frame, system) with one cluster and ``lam_min < lambda_2 < lam_max`` (below ~1e-26 the
    norms reach the rounding of the token differences), pooled over systems.

    Returns:
        One dict per (kind, row, col) of ``CLUSTER_EXPONENTS``: kind, block ("QK"...), slope, theory,
        points.
    """
    lam2 = curv.sigma_eigenvalues[..., 1]
    rows = []
    for kind, table in CLUSTER_EXPONENTS.items():
        for (r, c), theory in table.items():
            norm = curv.block_norm(kind, r, c)
            ok = (curv.cluster_count == 1) & (lam2 > lam_min) & (lam2 < lam_max) & (norm > 0)
            slope = float(np.polyfit(np.log(lam2[ok]), np.log(norm[ok]), 1)[0]) if ok.sum() >= 3 else float("nan")
            rows.append(dict(kind=kind, block=r + c, slope=slope, theory=theory, points=int(ok.sum())))
    return rows
