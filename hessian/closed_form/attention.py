"""Closed-form Hessian blocks of one self-attention head, ``F = A X W_V`` (Ormaniec, Dangel & Singh, 2025).

Moment form of the paper's Theorem 3.1 (H_o) and Theorem 3.2 (H_f) in row-major vec order, as in the
theory note §2.2-2.3: for query i, ``M2_i = X^T (dA_i/dT_i) X``, ``M3_i[u_i]``, ``m_i = (A X)_i``, ``q_i = W_Q^T x_i``,
``u_i = W_V g_i``, ``s_i = M2_i u_i``, scale ``beta`` (1/sqrt(d_K)). Valid for softmax and linear attention
(``dA/dT = I``, ``M3 = 0``), with or without a causal mask, for the unnormalised weights ``e^T / L`` of the
particle flow (raw moments), and for any per-row loss (MSE, cross-entropy).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ..block_matrix import BlockMatrix
from ._quantities import AttentionQuantities, attention_quantities

NAMES = ("W_Q", "W_K", "W_V")


def _flat(t: Tensor) -> Tensor:
    """(p, r, s, t) -> (p r, s t): the row-major vec layout of a block."""
    p, r, s, u = t.shape
    return t.reshape(p * r, s * u)


def _complete(upper: Mapping[tuple[str, str], Tensor]) -> dict[tuple[str, str], Tensor]:
    """Add the transposed lower blocks to the six upper ones."""
    out = dict(upper)
    for (a, b), block in upper.items():
        out[(b, a)] = block.T
    return out


def _outer(qt: AttentionQuantities, W_K: Tensor, W_V: Tensor) -> dict[tuple[str, str], Tensor]:
    beta = qt.beta
    P = torch.einsum("iab,bf->iaf", qt.M2, W_V)  # M2_i W_V
    C = torch.einsum("iaf,ifg,ibg->iab", P, qt.Lam, P)  # M2_i W_V Lam_i W_V^T M2_i
    KC = torch.einsum("ac,iab->icb", W_K, C)  # W_K^T C_i
    PL = torch.einsum("iaf,ifg->iag", P, qt.Lam)  # M2_i W_V Lam_i
    return _complete(
        {
            ("W_Q", "W_Q"): beta**2 * _flat(torch.einsum("ia,ib,icd,de->acbe", qt.X, qt.X, KC, W_K)),
            ("W_K", "W_K"): beta**2 * _flat(torch.einsum("iab,ic,ie->acbe", C, qt.q, qt.q)),
            ("W_Q", "W_K"): beta**2 * _flat(torch.einsum("ia,icb,ie->acbe", qt.X, KC, qt.q)),
            ("W_V", "W_V"): _flat(torch.einsum("ia,ib,ifg->afbg", qt.m, qt.m, qt.Lam)),
            ("W_Q", "W_V"): beta * _flat(torch.einsum("ia,ib,dc,idf->acbf", qt.X, qt.m, W_K, PL)),
            ("W_K", "W_V"): beta * _flat(torch.einsum("iaf,ic,ib->acbf", PL, qt.q, qt.m)),
        }
    )


def _functional(qt: AttentionQuantities, W_K: Tensor) -> dict[tuple[str, str], Tensor]:
    beta = qt.beta
    d, dK = W_K.shape
    dV = qt.G.shape[1]
    KM3 = torch.einsum("ac,iab->icb", W_K, qt.M3u)  # W_K^T M3_i[u_i]
    KM2 = torch.einsum("ac,iab->icb", W_K, qt.M2)  # W_K^T M2_i
    # T-functional term: the score is bilinear in (W_Q, W_K) (theory note §2.7)
    t_functional = torch.einsum("ia,ib,ce->acbe", qt.X, qt.S, torch.eye(dK, dtype=W_K.dtype))
    return _complete(
        {
            ("W_Q", "W_Q"): beta**2 * _flat(torch.einsum("ia,ib,icd,de->acbe", qt.X, qt.X, KM3, W_K)),
            ("W_K", "W_K"): beta**2 * _flat(torch.einsum("iab,ic,ie->acbe", qt.M3u, qt.q, qt.q)),
            ("W_Q", "W_K"): beta**2 * _flat(torch.einsum("ia,icb,ie->acbe", qt.X, KM3, qt.q))
            + beta * _flat(t_functional),
            ("W_V", "W_V"): torch.zeros(d * dV, d * dV, dtype=W_K.dtype),
            ("W_Q", "W_V"): beta * _flat(torch.einsum("ia,icb,if->acbf", qt.X, KM2, qt.G)),
            ("W_K", "W_V"): beta * _flat(torch.einsum("iba,ic,if->acbf", qt.M2, qt.q, qt.G)),
        }
    )


def _prepare(X, Y, W_Q, W_K, W_V, loss, attention, causal, beta):
    qt = attention_quantities(X, Y, W_Q, W_K, W_V, loss=loss, attention=attention, causal=causal, beta=beta)
    return qt, W_K.to(torch.float64), W_V.to(torch.float64)


def _assemble(blocks: Mapping[tuple[str, str], Tensor], W_Q: Tensor, W_V: Tensor) -> BlockMatrix:
    shapes = (tuple(W_Q.shape), tuple(W_Q.shape), tuple(W_V.shape))
    matrix = torch.cat([torch.cat([blocks[(a, b)] for b in NAMES], dim=1) for a in NAMES], dim=0)
    return BlockMatrix(matrix, NAMES, shapes)


_DOC_ARGS = """
    Args:
        X: (L, d) tokens as rows.
        Y: (L, d_V) MSE target, or (L,) integer classes for ``loss="cross_entropy"``.
        W_Q, W_K: (d, d_K); W_V: (d, d_V).
        loss: "mse" (``||F - Y||_F^2 / (L d_V)``, the paper's) or "cross_entropy" (mean over the L rows).
        attention: "softmax", "linear" (pattern = masked scores) or "unnormalized" (``e^T / L``, no mask: the
            particle flow's USA weights).
        causal: causal mask (moments over the visible prefix).
        beta: score scale; None means 1/sqrt(d_K).

    Returns:
        BlockMatrix over ("W_Q", "W_K", "W_V") in row-major vec order (flat index of W_Q[a, c] is a d_K + c):
        ``.blocks[("W_Q", "W_V")]`` is the (d d_K, d d_V) block, ``.matrix`` the assembled matrix.

    Raises:
        ValueError: inconsistent shapes, non-finite inputs, unknown loss or attention.
    """


def outer_product_blocks(
    X, Y, W_Q, W_K, W_V, *, loss="mse", attention="softmax", causal=False, beta=None
) -> BlockMatrix:
    qt, W_K64, W_V64 = _prepare(X, Y, W_Q, W_K, W_V, loss, attention, causal, beta)
    return _assemble(_outer(qt, W_K64, W_V64), W_Q, W_V)


def functional_blocks(X, Y, W_Q, W_K, W_V, *, loss="mse", attention="softmax", causal=False, beta=None) -> BlockMatrix:
    qt, W_K64, _ = _prepare(X, Y, W_Q, W_K, W_V, loss, attention, causal, beta)
    return _assemble(_functional(qt, W_K64), W_Q, W_V)


def hessian_blocks(X, Y, W_Q, W_K, W_V, *, loss="mse", attention="softmax", causal=False, beta=None) -> BlockMatrix:
    kw = dict(loss=loss, attention=attention, causal=causal, beta=beta)
    return outer_product_blocks(X, Y, W_Q, W_K, W_V, **kw) + functional_blocks(X, Y, W_Q, W_K, W_V, **kw)


def t_functional_term(X, Y, W_Q, W_K, W_V, *, loss="mse", attention="softmax", causal=False, beta=None) -> Tensor:
    qt, W_K64, _ = _prepare(X, Y, W_Q, W_K, W_V, loss, attention, causal, beta)
    dK = W_K64.shape[1]
    return qt.beta * torch.kron(qt.X.T @ qt.S, torch.eye(dK, dtype=torch.float64))


outer_product_blocks.__doc__ = (
    """Outer-product Hessian H_o = J^T (d^2 l/dF^2) J (Theorem 3.1), every pair among W_Q, W_K, W_V.

    ``H_o(Q,Q)[(a,c),(b,e)] = beta^2 sum_i x_ia x_ib [W_K^T M2_i W_V Lam_i W_V^T M2_i W_K]_ce``,
    ``H_o(V,V) = sum_i m_i m_i^T (x) Lam_i``, the others as in the theory note §2.2.
"""
    + _DOC_ARGS
)
functional_blocks.__doc__ = (
    """Functional Hessian H_f = sum_n (dl/dF_n) d^2 F_n (Theorem 3.2), every pair among W_Q, W_K, W_V.

    ``H_f(Q,Q)[(a,c),(b,e)] = beta^2 sum_i x_ia x_ib [W_K^T M3_i[u_i] W_K]_ce``, ``H_f(V,V) = 0``, and
    ``H_f(Q,K)`` includes the T-functional term ``beta (sum_i x_i s_i^T) (x) I_{d_K}`` (theory note §2.3).
"""
    + _DOC_ARGS
)
hessian_blocks.__doc__ = "Full Hessian H = H_o + H_f of the single-head layer.\n" + _DOC_ARGS
t_functional_term.__doc__ = """The T-functional part of H_f(Q,K): ``beta * grad_{W_QK} l (x) I_{d_K}`` as a (d d_K,
d d_K) matrix.

    ``grad_{W_QK} l = sum_i x_i s_i^T`` is the gradient w.r.t. the product ``W_QK = beta W_Q W_K^T``.
""" + _DOC_ARGS.replace("BlockMatrix over", "(Instead of a BlockMatrix: a Tensor.) Layout as a BlockMatrix over")
