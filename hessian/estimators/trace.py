"""Trace estimators: exact, Hutchinson (1989) and Hutch++ (Meyer, Musco, Musco & Woodruff, 2021)."""

from __future__ import annotations

import numpy as np

from .base import Estimate, as_matmat, check_samples, exact_columns, mean_and_stderr, rademacher


def hutchinson_trace(A: object, num_samples: int = 100, *, seed: int = 0) -> Estimate:
    """``tr A ~ mean_s v_s^T A v_s`` with Rademacher ``v_s`` (unbiased; variance 2(||A||_F^2 - sum A_ii^2)).

    Args:
        A: square (n, n) LinearOperator / array / tensor.
        num_samples: number of probes S.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        Estimate with stderr = sample std / sqrt(S).
    """
    matmat, n, dtype = as_matmat(A)
    check_samples("num_samples", num_samples, n)
    V = rademacher(np.random.default_rng(seed), n, num_samples, dtype)
    samples = np.einsum("ij,ij->j", V, matmat(V)).astype(np.float64)
    mean, se = mean_and_stderr(samples)
    return Estimate(float(mean), float(se), num_samples)


def hutchpp_trace(A: object, num_matvecs: int = 99, *, seed: int = 0) -> Estimate:
    """Hutch++: exact trace on a sketched range ``Q`` plus Hutchinson on ``(I - QQ^T) A (I - QQ^T)``.

    ``num_matvecs`` is split in thirds: sketch ``A S``, ``A Q``, and Hutchinson probes ``G``.

    Args:
        A: square (n, n) symmetric operator.
        num_matvecs: total products m >= 3; the sketch has m // 3 columns, which must not exceed n.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        Estimate; stderr is that of the Hutchinson part given Q (the low-rank part is exact).
    """
    matmat, n, dtype = as_matmat(A)
    check_samples("num_matvecs", num_matvecs, n)
    if num_matvecs < 3:
        raise ValueError(f"num_matvecs must be >= 3 for Hutch++ (sketch, range, probes), got {num_matvecs}")
    k = num_matvecs // 3
    check_samples("num_matvecs // 3 (Hutch++ sketch size)", k, n, at_most_dim=True)
    g = num_matvecs - 2 * k
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(matmat(rademacher(rng, n, k, dtype)).astype(np.float64))
    low_rank = float(np.trace(Q.T @ matmat(Q.astype(dtype))))
    G = rademacher(rng, n, g, np.float64)
    G = G - Q @ (Q.T @ G)
    samples = np.einsum("ij,ij->j", G, matmat(G.astype(dtype)))
    mean, se = mean_and_stderr(samples)
    return Estimate(low_rank + float(mean), float(se), 2 * k + g)


def trace(A: object, *, method: str = "hutchpp", num_samples: int = 99, seed: int = 0) -> Estimate:
    """Trace of a square operator.

    Args:
        A: (n, n) LinearOperator (e.g. ``problem.H.operator()``), array, tensor or BlockMatrix.
        method: "hutchpp" (default), "hutchinson", or "exact" (n products with unit vectors, stderr 0).
        num_samples: products for the random methods (Hutch++: total products), at most n (the exact
            trace costs n products).
        seed: probe seed.

    Returns:
        Estimate(value, stderr, num_matvecs).

    Raises:
        ValueError: unknown method, bad sample count, non-square A.
    """
    if method == "exact":
        matmat, n, dtype = as_matmat(A)
        total = sum(
            float(np.trace(cols[start : start + cols.shape[1]])) for start, cols in exact_columns(matmat, n, dtype)
        )
        return Estimate(total, 0.0, n)
    if method in ("hutchinson", "hutchpp"):
        # n unit vectors give the exact trace, so more random products than n is a mistake
        check_samples("num_samples", num_samples, as_matmat(A)[1], at_most_dim=True)
    if method == "hutchinson":
        return hutchinson_trace(A, num_samples, seed=seed)
    if method == "hutchpp":
        return hutchpp_trace(A, num_samples, seed=seed)
    raise ValueError(f"method must be 'hutchpp', 'hutchinson' or 'exact', got {method!r}")
