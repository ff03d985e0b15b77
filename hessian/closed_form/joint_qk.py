"""Blocks for the single-matrix parametrisation ``T = beta X W_QK X^T`` (theory note §2.7).

``H_o(QK,QK)[(a,b),(a',b')] = beta^2 sum_i x_ia x_ia' [M2_i W_V Lam_i W_V^T M2_i]_bb'``,
``H_f(QK,QK) = beta^2 sum_i x_ia x_ia' [M3_i[u_i]]_bb'``,
``H_o(QK,V)[(a,b),(b',f)] = beta sum_i x_ia m_ib' [M2_i W_V Lam_i]_bf``,
``H_f(QK,V)[(a,b),(b',f)] = beta sum_i x_ia [M2_i]_bb' g_if``; ``H_o(V,V)`` as for two matrices, ``H_f(V,V) = 0``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..block_matrix import BlockMatrix
from ._quantities import _matrix, attention_quantities

JOINT_NAMES = ("W_QK", "W_V")


def _n(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0] * t.shape[1], t.shape[2] * t.shape[3])


def joint_qk_blocks(
    X: Tensor,
    Y: Tensor,
    W_QK: Tensor,
    W_V: Tensor,
    *,
    beta: float = 1.0,
    loss: str = "mse",
    attention: str = "softmax",
    causal: bool = False,
) -> tuple[BlockMatrix, BlockMatrix]:
    """(H_o, H_f) over ("W_QK", "W_V") for ``F = A X W_V`` with scores ``beta X W_QK X^T``.

    Args:
        X: (L, d); Y: (L, d_V) target or (L,) classes; W_QK: (d, d); W_V: (d, d_V).
        beta: score scale (default 1: the temperature is part of W_QK).
        loss, attention, causal: as in ``outer_product_blocks``.

    Returns:
        Tuple (H_o, H_f) of BlockMatrix in row-major vec order.

    Raises:
        ValueError: inconsistent shapes or non-finite inputs.
    """
    X = _matrix(X, "X", (None, None))
    W_QK = _matrix(W_QK, "W_QK", (X.shape[1], X.shape[1]))
    # W_QK = W_Q W_K^T with W_Q = W_QK, W_K = I reproduces the scores exactly
    eye = torch.eye(X.shape[1], dtype=torch.float64)
    qt = attention_quantities(X, Y, W_QK, eye, W_V, loss=loss, attention=attention, causal=causal, beta=beta)
    W_V = W_V.to(torch.float64)
    b = qt.beta
    P = torch.einsum("iab,bf->iaf", qt.M2, W_V)
    C = torch.einsum("iaf,ifg,icg->iac", P, qt.Lam, P)
    PL = torch.einsum("iaf,ifg->iag", P, qt.Lam)
    dV = W_V.shape[1]
    d = X.shape[1]
    ho = {
        ("W_QK", "W_QK"): b**2 * _n(torch.einsum("ia,ic,ibe->abce", qt.X, qt.X, C)),
        ("W_QK", "W_V"): b * _n(torch.einsum("ia,ic,ibf->abcf", qt.X, qt.m, PL)),
        ("W_V", "W_V"): _n(torch.einsum("ia,ib,ifg->afbg", qt.m, qt.m, qt.Lam)),
    }
    hf = {
        ("W_QK", "W_QK"): b**2 * _n(torch.einsum("ia,ic,ibe->abce", qt.X, qt.X, qt.M3u)),
        ("W_QK", "W_V"): b * _n(torch.einsum("ia,ibc,if->abcf", qt.X, qt.M2, qt.G)),
        ("W_V", "W_V"): torch.zeros(d * dV, d * dV, dtype=torch.float64),
    }
    shapes = ((d, d), (d, dV))

    def assemble(blocks):
        top = torch.cat([blocks[("W_QK", "W_QK")], blocks[("W_QK", "W_V")]], dim=1)
        bottom = torch.cat([blocks[("W_QK", "W_V")].T, blocks[("W_V", "W_V")]], dim=1)
        return BlockMatrix(torch.cat([top, bottom]), JOINT_NAMES, shapes)

    return assemble(ho), assemble(hf)
