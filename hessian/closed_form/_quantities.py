"""Per-query attention moments and loss derivatives that every closed form is built from (theory note §1.4)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import check_finite
from ..models.attention import AttentionKind, attention_pattern

#: ``attention`` of the particle flow's unnormalised dynamics (USA, Geshkovski et al., 2023): weights
#: ``a_ij = e^{T_ij} / L``, whose derivatives ``d a_ij = a_ij dT_ij`` give raw instead of central moments
UNNORMALIZED = "unnormalized"


@dataclass(frozen=True)
class AttentionQuantities:
    """Single-head layer ``F = A X W_V``, ``T = beta X W_Q W_K^T X^T``, at one input X (L, d).

    Attributes:
        X: (L, d) input in float64.
        A: (L, L) pattern.
        J: (L, L, L) with J[i] = dA_i/dT_i (softmax: diag(a_i) - a_i a_i^T; linear: diag(mask_i);
            unnormalized: diag(a_i)).
        m: (L, d) first moments A X.
        M2: (L, d, d) second moments X^T J_i X (central for softmax).
        M3u: (L, d, d) third moments contracted with u_i (0 for linear attention).
        F: (L, d_V) output.
        G: (L, d_V) dl/dF.
        Lam: (L, d_V, d_V) d^2 l/dF_i^2.
        U: (L, d) rows u_i = W_V g_i.
        S: (L, d) rows s_i = M2_i u_i.
        q: (L, d_K) rows W_Q^T x_i.
        beta: score scale.
    """

    X: Tensor
    A: Tensor
    J: Tensor
    m: Tensor
    M2: Tensor
    M3u: Tensor
    F: Tensor
    G: Tensor
    Lam: Tensor
    U: Tensor
    S: Tensor
    q: Tensor
    beta: float


def _matrix(x: object, name: str, shape: tuple[int | None, ...]) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, x.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    check_finite(name, x)
    return x.to(torch.float64) if x.is_floating_point() else x


def check_weights(X, W_Q, W_K, W_V):
    """Validate (X (L, d), W_Q (d, d_K), W_K (d, d_K), W_V (d, d_V)) and cast to float64."""
    X = _matrix(X, "X", (None, None))
    d = X.shape[1]
    W_Q = _matrix(W_Q, "W_Q", (d, None))
    W_K = _matrix(W_K, "W_K", (d, W_Q.shape[1]))
    W_V = _matrix(W_V, "W_V", (d, None))
    return X, W_Q, W_K, W_V


def loss_derivatives(F: Tensor, Y: Tensor, loss: str) -> tuple[Tensor, Tensor]:
    """Output gradient G (L, K) and per-row output Hessians Lam (L, K, K) (theory note §1.1).

    MSE ``||F - Y||^2 / (L K)``: G = 2 (F - Y) / (L K), Lam_i = 2 I / (L K).
    Cross-entropy averaged over the L rows with integer targets Y (L,): G = (p - e_t) / L,
    Lam_i = (diag p_i - p_i p_i^T) / L.
    """
    L, K = F.shape
    if loss == "mse":
        Y = _matrix(Y, "Y", (L, K))
        G = 2 * (F - Y) / (L * K)
        Lam = (2.0 / (L * K)) * torch.eye(K, dtype=F.dtype).expand(L, K, K)
        return G, Lam
    if loss == "cross_entropy":
        if not isinstance(Y, Tensor) or Y.is_floating_point() or Y.shape != (L,):
            raise ValueError(
                f"Y must be integer targets of shape ({L},) for cross_entropy, got {getattr(Y, 'shape', type(Y))}"
            )
        p = torch.softmax(F, dim=-1)
        G = (p - torch.nn.functional.one_hot(Y, K).to(F.dtype)) / L
        Lam = (torch.diag_embed(p) - p[:, :, None] * p[:, None, :]) / L
        return G, Lam
    raise ValueError(f"loss must be 'mse' or 'cross_entropy', got {loss!r}")


def attention_quantities(
    X: Tensor,
    Y: Tensor,
    W_Q: Tensor,
    W_K: Tensor,
    W_V: Tensor,
    *,
    loss: str = "mse",
    attention: str = "softmax",
    causal: bool = False,
    beta: float | None = None,
) -> AttentionQuantities:
    """Moments of §1.4 and loss derivatives of §1.1 in float64 (see ``AttentionQuantities``).

    ``attention`` is an ``AttentionKind`` ("softmax", "linear") or ``UNNORMALIZED``.
    """
    X, W_Q, W_K, W_V = check_weights(X, W_Q, W_K, W_V)
    unnormalized = attention == UNNORMALIZED
    kind = None if unnormalized else AttentionKind.parse(attention)
    if unnormalized and causal:
        raise ValueError(f"causal must be False for attention={UNNORMALIZED!r}")
    beta = 1.0 / math.sqrt(W_Q.shape[1]) if beta is None else float(beta)
    L = X.shape[0]
    T = beta * X @ W_Q @ W_K.T @ X.T
    if unnormalized:
        A = torch.exp(T) / L
        J = torch.diag_embed(A)  # d a_ij = a_ij dT_ij
    else:
        A = attention_pattern(T, kind=kind, causal=causal)
    if kind is AttentionKind.SOFTMAX:
        J = torch.diag_embed(A) - A[:, :, None] * A[:, None, :]
    elif kind is AttentionKind.LINEAR:
        mask = torch.ones(L, L, dtype=X.dtype)
        J = torch.diag_embed(mask.tril() if causal else mask)
    m = A @ X
    M2 = torch.einsum("ja,ijk,kb->iab", X, J, X)
    F = m @ W_V
    G, Lam = loss_derivatives(F, Y, loss)
    U = G @ W_V.T
    S = torch.einsum("iab,ib->ia", M2, U)
    if kind is AttentionKind.SOFTMAX:
        D = X[None, :, :] - m[:, None, :]  # D[i, j] = x_j - m_i
        M3u = torch.einsum("ij,ijc,ic,ija,ijb->iab", A, D, U, D, D)
    elif unnormalized:  # d^2 a_ij = a_ij dT_ij^2: the raw third moment
        M3u = torch.einsum("ij,jc,ic,ja,jb->iab", A, X, U, X, X)
    else:
        M3u = torch.zeros_like(M2)
    return AttentionQuantities(X, A, J, m, M2, M3u, F, G, Lam, U, S, X @ W_Q, beta)
