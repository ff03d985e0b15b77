"""Extreme eigenvalues of a symmetric operator by implicitly restarted Lanczos (``scipy.sparse.linalg.eigsh``)."""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh

from ..checks import check_int
from .base import Estimate, as_matmat


def top_eigenvalues(
    A: object, k: int = 1, *, which: str = "LA", tol: float = 1e-10, seed: int = 0, maxiter: int | None = None
) -> Estimate:
    """The k extreme eigenvalues of a symmetric operator.

    Args:
        A: symmetric (n, n) LinearOperator (e.g. ``Curvature.operator()``), array, tensor or BlockMatrix.
        k: number of eigenvalues, 1 <= k < n (use ``numpy.linalg.eigvalsh`` on a dense matrix for all).
        which: "LA" largest algebraic (default), "SA" smallest algebraic, "LM" largest magnitude.
        tol: relative accuracy passed to ARPACK.
        seed: seed of the deterministic Lanczos start vector.
        maxiter: ARPACK iteration limit (None: scipy's default).

    Returns:
        Estimate with value (k,) ordered from the most extreme ("LA": decreasing, "SA": increasing, "LM": by
        magnitude) and stderr (k,) the residual
        norms ``||A u - lambda u||`` of the unit Ritz vectors, which bound the distance to an eigenvalue of A.

    Raises:
        ValueError: k out of range or unknown ``which``.
    """
    vals, _, resid, num_matvecs = lanczos_eigenpairs(A, k, which=which, tol=tol, seed=seed, maxiter=maxiter)
    return Estimate(vals, resid, num_matvecs)


def lanczos_eigenpairs(
    A: object,
    k: int,
    *,
    which: str = "LA",
    tol: float = 1e-10,
    seed: int = 0,
    maxiter: int | None = None,
    ncv: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``top_eigenvalues`` with the eigenvectors: (values (k,), unit vectors (n, k), residual norms (k,), products).

    ``ncv``: Lanczos vectors kept by ARPACK (None: scipy's 2k + 1); a wider space needs fewer products when the
    wanted eigenvalues are close.
    """
    matmat, n, dtype = as_matmat(A)
    check_int("k", k)
    if k >= n:
        raise ValueError(
            f"k={k} must be smaller than the dimension n={n} for Lanczos; use numpy.linalg.eigvalsh on the dense matrix"
        )
    if which not in ("LA", "SA", "LM"):
        raise ValueError(f"which must be 'LA', 'SA' or 'LM', got {which!r}")
    count = [0]

    def mv(x: np.ndarray) -> np.ndarray:
        count[0] += 1
        return np.asarray(matmat(np.asarray(x, dtype=dtype).reshape(n, -1)), dtype=np.float64).reshape(np.shape(x))

    op = LinearOperator((n, n), matvec=mv, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(n)
    vals, vecs = eigsh(op, k=k, which=which, tol=tol, v0=v0, maxiter=maxiter, ncv=ncv)
    order = np.argsort(-np.abs(vals) if which == "LM" else (vals if which == "SA" else -vals))
    vals, vecs = vals[order], vecs[:, order]
    resid = np.linalg.norm(np.asarray(matmat(vecs.astype(dtype)), dtype=np.float64) - vecs * vals, axis=0)
    return vals, vecs, resid, count[0] + k
