"""Frobenius norm: exact (n products) for small operators, Hutchinson ``E||A v||^2 = ||A||_F^2`` otherwise."""

from __future__ import annotations

import numpy as np

from ..checks import check_int
from .base import Estimate, as_matmat, check_samples, exact_columns, mean_and_stderr, rademacher


def hutchinson_squared_frobenius(A: object, num_samples: int = 20, *, seed: int = 0) -> Estimate:
    """``||A||_F^2 ~ mean_s ||A v_s||^2`` with Rademacher ``v_s``.

    For symmetric A one sample has variance ``2 (||A^2||_F^2 - sum_i (A^2)_ii^2)``.

    Args:
        A: square (n, n) operator.
        num_samples: probes S.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        Estimate of the squared norm, stderr = sample std / sqrt(S).
    """
    matmat, n, dtype = as_matmat(A)
    check_samples("num_samples", num_samples, n)
    V = rademacher(np.random.default_rng(seed), n, num_samples, dtype)
    AV = np.asarray(matmat(V), dtype=np.float64)
    mean, se = mean_and_stderr((AV * AV).sum(axis=0))
    return Estimate(float(mean), float(se), num_samples)


def exact_squared_frobenius(A: object) -> Estimate:
    """``||A||_F^2`` from the n columns ``A e_i`` (stderr 0)."""
    matmat, n, dtype = as_matmat(A)
    total = sum(float(np.sum(np.asarray(cols, dtype=np.float64) ** 2)) for _, cols in exact_columns(matmat, n, dtype))
    return Estimate(total, 0.0, n)


def frobenius_norm(
    A: object, *, method: str = "auto", num_samples: int = 20, seed: int = 0, max_exact: int = 1024
) -> Estimate:
    """Frobenius norm ``||A||_F`` of a square operator (e.g. a Hessian block).

    Args:
        A: (n, n) LinearOperator (e.g. ``problem.H.operator()``), array, tensor or BlockMatrix.
        method: "auto" (exact if n <= max_exact, else Hutchinson), "exact" or "hutchinson".
        num_samples: Hutchinson probes, at most n; the reported norm is ``sqrt(mean ||A v||^2)`` (the
            reference protocol). ``hutchinson_squared_frobenius`` allows more, for statistical checks.
        seed: probe seed.
        max_exact: largest n for which "auto" computes the exact value.

    Returns:
        Estimate; for Hutchinson the stderr is the delta-method ``se(||A||^2) / (2 ||A||)``.

    Raises:
        ValueError: unknown method, bad sample count, non-square A.
    """
    check_int("max_exact", max_exact)
    _, n, _ = as_matmat(A)
    if method == "auto":
        method = "exact" if n <= max_exact else "hutchinson"
    if method == "exact":
        sq = exact_squared_frobenius(A)
    elif method == "hutchinson":
        # the exact norm costs n products, so more random products than n is a mistake
        check_samples("num_samples", num_samples, n, at_most_dim=True)
        sq = hutchinson_squared_frobenius(A, num_samples, seed=seed)
    else:
        raise ValueError(f"method must be 'auto', 'exact' or 'hutchinson', got {method!r}")
    norm = float(np.sqrt(max(sq.value, 0.0)))
    se = 0.0 if sq.stderr == 0 else (float(sq.stderr) / (2 * norm) if norm > 0 else float("nan"))
    return Estimate(norm, se, sq.num_matvecs)
