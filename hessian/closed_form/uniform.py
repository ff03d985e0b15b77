"""Uniform-attention limit (A = 1 1^T / L, e.g. W_Q = 0), MSE (theory note §2.4).

``H_o(Q,Q) = 2/(d_V d_K) Sigma_xx (x) (W_K^T C W_V W_V^T C W_K)`` with ``C = Sigma_xx - xbar xbar^T``, and
``H_o(V,V) = (2/d_V) xbar xbar^T (x) I_{d_V}``: the query block is cubic in second moments, the value block
quadratic in the token mean.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._quantities import check_weights


def uniform_attention_outer_product_blocks(
    X: Tensor, W_K: Tensor, W_V: Tensor, *, beta: float | None = None
) -> dict[str, Tensor]:
    """``{"W_Q": H_o(Q,Q), "W_V": H_o(V,V)}`` under uniform attention (exact when A = 1 1^T / L).

    Args:
        X: (L, d); W_K: (d, d_K); W_V: (d, d_V).
        beta: score scale; None means 1/sqrt(d_K).

    Returns:
        dict of the two (d d_K, d d_K) and (d d_V, d d_V) blocks, row-major vec order.
    """
    X, W_K, _, W_V = check_weights(X, W_K, W_K, W_V)
    L = X.shape[0]
    dK, dV = W_K.shape[1], W_V.shape[1]
    beta = 1.0 / math.sqrt(dK) if beta is None else float(beta)
    Sigma = X.T @ X / L
    xbar = X.mean(0)
    C = Sigma - torch.outer(xbar, xbar)
    return {
        "W_Q": 2 * beta**2 / dV * torch.kron(Sigma, W_K.T @ C @ W_V @ W_V.T @ C @ W_K),
        "W_V": 2 / dV * torch.kron(torch.outer(xbar, xbar), torch.eye(dV, dtype=X.dtype)),
    }
