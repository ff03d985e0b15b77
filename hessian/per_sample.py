"""Per-sample losses and Hessians and the running means of the empirical loss (theory note §4.5).

At fixed parameters w, with per-sample losses ``l_i`` and ``L_k = (1/k) sum_{i<=k} l_i``, ``H_k = hess L_k``:

    L_{k+1} - L_k = (l_{k+1} - L_k) / (k + 1),        H_{k+1} - H_k = (hess l_{k+1} - H_k) / (k + 1),

so both differences decay as 1/k (after Petrov, Kiselev, Meshkov & Grabovoy, 2025). ``per_sample_hessians``
gives the exact (autograd, float64) per-sample Hessians, ``running_differences`` the running means and
their differences, chunk after chunk.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.func import grad, vjp, vmap

from ._problem import Loss, Model, flatten, make_problem, unflatten


def per_sample_hessians(
    model: Model, loss: Loss, params: dict[str, Tensor], X: Tensor, Y: Tensor, blocks: Sequence[str]
) -> tuple[Tensor, Tensor]:
    """Exact per-sample losses and Hessians ``hess_w loss(model(params, X[i:i+1]), Y[i:i+1])`` over ``blocks``.

    Every sample gets its own copy of w; the sum of the per-sample losses then has a block-diagonal
    Hessian, and one Hessian-vector product with e_c repeated over the copies returns column c of every
    per-sample Hessian at once: P products for n samples (instead of n P).

    Args:
        model: functional model ``f(params, X)`` (called with a batch of one sample).
        loss: ``loss(output, Y) -> scalar``.
        params: parameters (cast to float64).
        X: (n, ...) samples; Y: (n, ...) targets.
        blocks: parameter names (row-major concatenation, P entries).

    Returns:
        (losses (n,), hessians (n, P, P)) in float64.

    Raises:
        ValueError, TypeError: as ``CurvatureProblem`` (checked on the first sample); X and Y of different length.
    """
    if not isinstance(X, Tensor) or not isinstance(Y, Tensor):
        raise TypeError(f"X and Y must be torch.Tensors, got {type(X).__name__} and {type(Y).__name__}")
    if X.ndim < 1 or Y.ndim < 1 or X.shape[0] != Y.shape[0] or X.shape[0] == 0:
        raise ValueError(
            "X and Y must hold the same number n >= 1 of samples on axis 0, "
            f"got shapes {tuple(X.shape)} and {tuple(Y.shape)}"
        )
    problem = make_problem(model, loss, params, X[:1], Y[:1], blocks, torch.float64)
    names, shapes = problem.names, problem.shapes
    P = problem.dim
    w0 = flatten(problem.params, names)
    X = X.to(torch.float64) if X.is_floating_point() else X
    Y = Y.to(torch.float64) if Y.is_floating_point() else Y
    n = X.shape[0]

    def one(w: Tensor, x: Tensor, y: Tensor) -> Tensor:
        merged = dict(problem.params)
        merged.update(unflatten(names, shapes, w))
        return loss(model(merged, x[None]), y[None])

    def total(W: Tensor) -> Tensor:
        return vmap(one)(W, X, Y).sum()

    W = w0.expand(n, P).clone()
    with torch.no_grad():
        losses = vmap(one)(W, X, Y)
    _, pullback = vjp(grad(total), W)
    eye = torch.eye(P, dtype=torch.float64)
    cols = vmap(lambda e: pullback(e.expand(n, P))[0], chunk_size=32)(eye)  # (P, n, P): [c, i, :] = H_i e_c
    return losses.detach(), cols.permute(1, 2, 0).detach()


def running_differences(
    losses: Tensor, hessians: Tensor, *, k0: int = 0, L_prev: float = 0.0, H_prev: Tensor | None = None
) -> tuple[np.ndarray, np.ndarray, float, Tensor]:
    """``|L_{k+1} - L_k|`` and ``||H_{k+1} - H_k||_F`` for the samples k0+1 .. k0+n, continuing a running mean.

    Args:
        losses: (n,) per-sample losses of samples k0+1 .. k0+n (1-based).
        hessians: (n, P, P) their Hessians.
        k0: samples already averaged.
        L_prev, H_prev: ``L_{k0}`` and ``H_{k0}`` (ignored when k0 = 0).

    Returns:
        (dL (n,), dH (n,), L_{k0+n}, H_{k0+n}); entry j is the difference ``L_{k+1} - L_k`` at k = k0 + j
        (NaN at k = 0, where L_0 is undefined).
    """
    n, P = hessians.shape[0], hessians.shape[-1]
    L = float(L_prev) if k0 > 0 else 0.0
    H = H_prev.clone() if (k0 > 0 and H_prev is not None) else torch.zeros(P, P, dtype=torch.float64)
    dL, dH = np.full(n, np.nan), np.full(n, np.nan)
    for j in range(n):
        k = k0 + j  # samples in the current mean
        l, h = float(losses[j]), hessians[j]
        if k == 0:
            L, H = l, h.clone()
            continue
        # exact identities of theory note §4.5: the update and the difference are the same vector
        stepL = (l - L) / (k + 1)
        stepH = (h - H) / (k + 1)
        dL[j], dH[j] = abs(stepL), float(torch.linalg.matrix_norm(stepH))
        L, H = L + stepL, H + stepH
    return dL, dH, L, H
