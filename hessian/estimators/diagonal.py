"""Diagonal of a square operator: exact (n products) or Hutchinson ``E[v * A v] = diag A`` (Bekas et al., 2007)."""

from __future__ import annotations

import numpy as np

from .base import Estimate, as_matmat, check_samples, exact_columns, mean_and_stderr, rademacher


def hutchinson_diagonal(A: object, num_samples: int = 100, *, seed: int = 0) -> Estimate:
    """``diag A ~ mean_s v_s * (A v_s)`` with Rademacher ``v_s``; entry i has variance ``sum_{j != i} A_ij^2``.

    Args:
        A: square (n, n) operator.
        num_samples: probes S.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        Estimate with (n,) value and (n,) stderr.
    """
    matmat, n, dtype = as_matmat(A)
    check_samples("num_samples", num_samples, n)
    V = rademacher(np.random.default_rng(seed), n, num_samples, dtype)
    mean, se = mean_and_stderr((V * np.asarray(matmat(V))).T.astype(np.float64))
    return Estimate(mean, se, num_samples)


def diagonal(A: object, *, method: str = "exact", num_samples: int = 100, seed: int = 0) -> Estimate:
    """Diagonal of A.

    Args:
        A: (n, n) LinearOperator, array, tensor or BlockMatrix.
        method: "exact" (n products, stderr 0) or "hutchinson".
        num_samples: Hutchinson probes, at most n (the exact diagonal costs n products).
        seed: probe seed.

    Returns:
        Estimate with (n,) arrays.
    """
    if method == "exact":
        matmat, n, dtype = as_matmat(A)
        diag = np.empty(n)
        for start, cols in exact_columns(matmat, n, dtype):
            b = cols.shape[1]
            diag[start : start + b] = cols[np.arange(start, start + b), np.arange(b)]
        return Estimate(diag, np.zeros(n), n)
    if method == "hutchinson":
        check_samples("num_samples", num_samples, as_matmat(A)[1], at_most_dim=True)
        return hutchinson_diagonal(A, num_samples, seed=seed)
    raise ValueError(f"method must be 'exact' or 'hutchinson', got {method!r}")
