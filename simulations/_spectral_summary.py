"""Nine numbers that summarise the spectrum of one symmetric curvature block, dense or matrix-free.

* dense (P small): every number is exact, from one LAPACK spectrum ("dense");
* a ``LinearOperator``: extreme eigenvalues and, for a definite block, kappa by Lanczos ("lanczos"); trace by
  Hutch++ ("hutchpp"); Frobenius norm by Hutchinson ("hutchinson"); negative fraction and mass by stochastic
  Lanczos quadrature ("slq"); kappa and rank of an indefinite or singular block are not determined
  ("undetermined", NaN / -1: its smallest |lambda| is interior); an end not converged within ``lanczos_maxiter``
  ARPACK restarts (typically the bottom of a PSD block, a cluster at 0) is NaN ("unconverged").
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import ArpackNoConvergence

from hessian.conditioning import (
    conditioning_from_eigenvalues,
    conditioning_from_extremes,
    extreme_eigenvalues,
    negative_mass,
    negative_mass_from_eigenvalues,
)
from hessian.estimators import frobenius_norm, trace

QUANTITIES = (
    "frobenius",
    "trace",
    "largest",
    "smallest",
    "kappa",
    "rank",
    "abs_smallest",
    "negative_fraction",
    "negative_mass",
)
#: how each number was obtained (module docstring)
METHODS = ("dense", "lanczos", "unconverged", "undetermined", "hutchpp", "hutchinson", "slq")


def dense_summary(M: np.ndarray, rtol: float | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``QUANTITIES`` of a dense symmetric matrix from one LAPACK spectrum: (values (Q,), stderr (Q,), methods)."""
    M = 0.5 * (M + M.T)
    lam = np.linalg.eigvalsh(M)
    c = conditioning_from_eigenvalues(lam, rtol=rtol)
    neg = negative_mass_from_eigenvalues(lam, rtol=rtol)
    values = [
        np.linalg.norm(M),
        np.trace(M),
        c.largest,
        c.smallest,
        c.kappa,
        c.rank,
        c.abs_smallest,
        neg.fraction,
        neg.mass,
    ]
    return np.array(values, dtype=np.float64), np.zeros(len(QUANTITIES)), ["dense"] * len(QUANTITIES)


def operator_summary(op, budget) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``QUANTITIES`` of a symmetric operator by Lanczos, Hutch++, Hutchinson and SLQ (module docstring).

    Args:
        op: (P, P) symmetric ``LinearOperator``.
        budget: any object with the estimator budget ``rtol``, ``lanczos_tol``, ``lanczos_maxiter``,
            ``slq_probes``, ``slq_steps``, ``trace_samples``, ``frobenius_samples`` and ``seed``
            (a ``SizeSweepConfig``).

    Returns:
        (values (Q,), stderr (Q,), methods).
    """
    ends = []
    for which in ("smallest", "largest"):
        # each end on its own: a PSD block's bottom (a cluster at 0) may not converge while its top does
        try:
            ends.append(
                extreme_eigenvalues(
                    op,
                    1,
                    which,
                    dense_threshold=0,
                    tol=budget.lanczos_tol,
                    seed=budget.seed,
                    maxiter=budget.lanczos_maxiter,
                ).values[0]
            )
        except ArpackNoConvergence:
            ends.append(float("nan"))
    c = conditioning_from_extremes(*ends, op.shape[0], rtol=budget.rtol)
    neg = negative_mass(
        op,
        rtol=budget.rtol,
        dense_threshold=0,
        num_probes=budget.slq_probes,
        num_steps=budget.slq_steps,
        seed=budget.seed,
    )
    tr = trace(op, method="hutchpp", num_samples=budget.trace_samples, seed=budget.seed)
    fro = frobenius_norm(op, method="hutchinson", num_samples=budget.frobenius_samples, seed=budget.seed)
    ok = ["lanczos" if np.isfinite(e) else "unconverged" for e in ends]
    known = "lanczos" if np.isfinite(c.kappa) else "undetermined"
    values = [fro.value, tr.value, c.largest, c.smallest, c.kappa, c.rank, c.abs_smallest, neg.fraction, neg.mass]
    stderr = [fro.stderr, tr.stderr, 0.0, 0.0, 0.0, 0.0, 0.0, neg.fraction_stderr, neg.mass_stderr]
    methods = ["hutchinson", "hutchpp", ok[1], ok[0], known, known, known, "slq", "slq"]
    return np.array(values, dtype=np.float64), np.array(stderr, dtype=np.float64), methods
