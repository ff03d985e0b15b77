"""Linear attention without mask, MSE: every H_o block is cubic in Sigma_xx = X^T X / L (theory note §2.5).

With ``c = 2 L^2 beta^2 / d_V`` (``beta^2 = 1/d_K`` by default) and ``S = Sigma_xx``:
``H_o(Q,Q) = c S (x) (W_K^T S W_V W_V^T S W_K)``, ``H_o(K,K) = c (S W_V W_V^T S) (x) (W_Q^T S W_Q)``,
``H_o(V,V) = c (S W_K W_Q^T S W_Q W_K^T S) (x) I``, ``H_o(Q,V) = c (S W_Q W_K^T S) (x) (W_K^T S W_V)``,
``H_o(Q,K)[(a,c),(b,e)] = c (S W_Q)_ae (W_K^T S W_V W_V^T S)_cb``,
``H_o(K,V)[(a,c),(b,f)] = c (S W_V)_af (W_Q^T S W_Q W_K^T S)_cb``. H_f is block-hollow: its diagonal blocks vanish.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..block_matrix import BlockMatrix
from ._quantities import check_weights
from .attention import _assemble, _complete


def linear_attention_outer_product_blocks(
    X: Tensor, W_Q: Tensor, W_K: Tensor, W_V: Tensor, *, beta: float | None = None
) -> BlockMatrix:
    """H_o of unmasked linear attention with the paper's MSE, from Sigma_xx alone (independent of Y).

    Args:
        X: (L, d) tokens as rows.
        W_Q, W_K: (d, d_K); W_V: (d, d_V).
        beta: score scale; None means 1/sqrt(d_K).

    Returns:
        BlockMatrix over ("W_Q", "W_K", "W_V"), row-major vec order.

    Raises:
        ValueError: inconsistent shapes or non-finite inputs.
    """
    X, W_Q, W_K, W_V = check_weights(X, W_Q, W_K, W_V)
    L = X.shape[0]
    dK, dV = W_Q.shape[1], W_V.shape[1]
    beta = 1.0 / math.sqrt(dK) if beta is None else float(beta)
    S = X.T @ X / L
    c = 2 * L**2 * beta**2 / dV
    kron = torch.kron
    n = lambda t: t.reshape(t.shape[0] * t.shape[1], t.shape[2] * t.shape[3])  # noqa: E731
    upper = {
        ("W_Q", "W_Q"): c * kron(S, W_K.T @ S @ W_V @ W_V.T @ S @ W_K),
        ("W_K", "W_K"): c * kron(S @ W_V @ W_V.T @ S, W_Q.T @ S @ W_Q),
        ("W_V", "W_V"): c * kron(S @ W_K @ W_Q.T @ S @ W_Q @ W_K.T @ S, torch.eye(dV, dtype=X.dtype)),
        ("W_Q", "W_V"): c * kron(S @ W_Q @ W_K.T @ S, W_K.T @ S @ W_V),
        ("W_Q", "W_K"): c * n(torch.einsum("ae,cb->acbe", S @ W_Q, W_K.T @ S @ W_V @ W_V.T @ S)),
        ("W_K", "W_V"): c * n(torch.einsum("af,cb->acbf", S @ W_V, W_Q.T @ S @ W_Q @ W_K.T @ S)),
    }
    return _assemble(_complete(upper), W_Q, W_V)
