"""Closed-form Jacobians of one self-attention head ``F = A X W_V`` w.r.t. X, W_Q, W_K and W_V.

Theory note §1.3-§2.1: ``T = beta X W_Q W_K^T X^T``, ``A = softmax(T)`` row by row (keys j > i masked when
causal), ``V = X W_V``, ``dA_i/dT_i = J_i = diag(a_i) - a_i a_i^T``. Every Jacobian is a (L d_V, numel) matrix in
row-major vec order on both sides: row ``i d_V + f`` is ``F[i, f]``, column ``a n + c`` is ``W[a, c]`` for a
(d, n) argument (``X[j, a]`` is column ``j d + a``).

Everything is built from one (L, d_V, L) tensor ``P[i, f, j] = (V^T J_i)[f, j] = a_ij (V_j - F_i)_f`` (linear
attention: ``mask_ij V_jf``). Since ``sum_j P[i, f, j] = 0`` for softmax, ``P_i X = W_V^T M2_i`` with the second
central moment ``M2_i = X^T J_i X`` of §1.4 (for linear attention ``X^T diag(mask_i) X``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..models.attention import AttentionKind, attention_pattern
from ._quantities import check_weights


def attention_jacobians(
    X: Tensor,
    W_Q: Tensor,
    W_K: Tensor,
    W_V: Tensor,
    *,
    scale: float | None = None,
    causal: bool = False,
    attention: str = "softmax",
) -> dict[str, Tensor]:
    """Jacobians of ``F = softmax(scale X W_Q W_K^T X^T) X W_V`` w.r.t. each argument, in closed form.

    With ``m_i = (A X)_i``, ``q_i = W_Q^T x_i``, ``P_i`` as in the module docstring and ``beta = scale``:

    * ``dF/dW_V = (A X) (x) I_{d_V}``:                       ``[(i,f),(a,g)] = m_ia delta_fg``;
    * ``dF/dW_Q``, row block i ``= x_i^T (x) beta W_V^T M2_i W_K``: ``[(i,f),(a,c)] = beta x_ia (P_i X W_K)_fc``;
    * ``dF/dW_K``, row block i ``= beta W_V^T M2_i (x) q_i^T``:      ``[(i,f),(b,e)] = beta (P_i X)_fb q_ie``;
    * ``dF/dX = A (x) W_V^T + beta blockdiag_i(W_V^T M2_i W_K W_Q^T) + beta [P[i, f, j] (X W_Q W_K^T)_ia]``:
      the values (first term) and the scores, ``dT_ik = beta (dx_i^T W x_k + x_i^T W dx_k)`` with
      ``W = W_Q W_K^T``: query i itself moves (block-diagonal second term) and key j moves (third term,
      ``[(i,f),(j,a)]``).

    Args:
        X: (L, d) tokens as rows.
        W_Q, W_K: (d, d_K); W_V: (d, d_V).
        scale: score scale beta; None means 1/sqrt(d_K).
        causal: mask keys j > i (the formulas hold with a_ij = 0 there).
        attention: "softmax" (default) or "linear" (pattern = masked scores, ``J_i = diag(mask_i)``).

    Returns:
        dict with keys "X" (L d_V, L d), "W_Q" (L d_V, d d_K), "W_K" (L d_V, d d_K), "W_V" (L d_V, d d_V), float64.

    Raises:
        ValueError: a non-2-D argument, inconsistent shapes, non-finite entries, a non-finite scale, unknown attention.
        TypeError: a non-tensor argument.

    Example:
        >>> X, W = torch.randn(4, 3, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
        >>> attention_jacobians(X, W, W, W)["X"].shape
        torch.Size([8, 12])
    """
    X, W_Q, W_K, W_V = check_weights(X, W_Q, W_K, W_V)
    kind = AttentionKind.parse(attention)
    if scale is None:
        beta = 1.0 / math.sqrt(W_Q.shape[1])
    elif isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite float or None, got {scale!r}")
    else:
        beta = float(scale)
    (L, d), dK, dV = X.shape, W_Q.shape[1], W_V.shape[1]
    W = W_Q @ W_K.T
    A = attention_pattern(beta * X @ W @ X.T, kind=kind, causal=causal)
    V = X @ W_V
    if kind is AttentionKind.SOFTMAX:
        P = A[:, None, :] * (V.T[None, :, :] - (A @ V)[:, :, None])
    else:
        mask = torch.ones(L, L, dtype=X.dtype)
        P = (mask.tril() if causal else mask)[:, None, :] * V.T[None, :, :]
    PX = P @ X  # (L, d_V, d): W_V^T M2_i
    eye_V = torch.eye(dV, dtype=X.dtype)
    J_X = A[:, None, :, None] * W_V.T[None, :, None, :]  # values: A (x) W_V^T
    J_X.addcmul_(P[:, :, :, None], (X @ W)[:, None, None, :], value=beta)  # keys
    rows = torch.arange(L)
    J_X[rows, :, rows, :] += beta * PX @ W.T  # queries
    return {
        "X": J_X.reshape(L * dV, L * d),
        "W_Q": beta * torch.einsum("ia,ifc->ifac", X, PX @ W_K).reshape(L * dV, d * dK),
        "W_K": beta * torch.einsum("ifb,ie->ifbe", PX, X @ W_Q).reshape(L * dV, d * dK),
        "W_V": torch.einsum("ia,fg->ifag", A @ X, eye_V).reshape(L * dV, d * dV),
    }
