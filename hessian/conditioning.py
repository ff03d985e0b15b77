r"""Extreme eigenvalues, condition number and negative spectral mass of a symmetric curvature block.

Theory note §1.2: ``H = H_o + H_f`` with ``H_o`` (Gauss-Newton) PSD for convex losses and often rank-deficient,
``H_f`` and ``H`` indefinite in general. For a symmetric (n, n) matrix with eigenvalues
``lambda_1 <= ... <= lambda_n`` and ``|lambda|_max = max_i |lambda_i|`` we define, with a relative rank
tolerance ``rtol`` (default ``n * eps``, numpy's ``matrix_rank`` rule):

* numerical rank ``r = #{i : |lambda_i| > rtol |lambda|_max}``;
* condition number ``kappa = |lambda|_max / min{|lambda_i| : |lambda_i| > rtol |lambda|_max}``: the ratio of the
  largest to the smallest absolute eigenvalue over the numerical range, i.e. ``||A|| ||A_r^+||`` for the rank-r
  truncation. It is the usual ``kappa_2 = ||A|| ||A^{-1}||`` when ``r = n``. Negative eigenvalues count by
  their modulus, so for an indefinite H the smallest |lambda| lies inside the spectrum;
* negative fraction ``nu_- = #{i : lambda_i < -rtol |lambda|_max} / n``, the integral over lambda < 0 of the
  spectral density ``rho = (1/n) sum_i delta(lambda - lambda_i)``;
* negative mass ``mu_- = sum_{lambda_i < 0} |lambda_i| / sum_i |lambda_i|``, the share of the nuclear norm
  carried by negative eigenvalues (0 for PSD, 1/2 for a spectrum symmetric about 0; no tolerance needed since
  round-off eigenvalues carry ~eps of the mass).

Two paths. Dense (n <= ``dense_threshold``): an operator is applied to the identity and LAPACK
(``numpy.linalg.eigh``) gives every quantity exactly. Matrix-free: implicitly restarted Lanczos
(``scipy.sparse.linalg.eigsh``) at one or both ends, on the operator shifted by ``+-|lambda|_max`` so that the
stopping rule is relative to ``|lambda|_max`` rather than to an end that may sit at 0; ``kappa`` is then known only
for a definite operator (both
ends of one sign, away from 0), because the smallest |lambda| of an indefinite or singular operator is an
interior eigenvalue Lanczos does not reach: it is reported as NaN with rank -1. ``nu_-`` and ``mu_-`` come from
stochastic Lanczos quadrature (``estimators.slq``), exact up to the probe average when ``num_steps = n``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh

from .block_matrix import BlockMatrix
from .checks import check_int
from .estimators.base import as_matmat, mean_and_stderr
from .estimators.slq import lanczos, spectral_density

#: largest n for which an operator is turned into a dense matrix (n products) and diagonalised by LAPACK
DENSE_THRESHOLD = 1024
WHICH = ("largest", "smallest", "both", "magnitude")
_ARPACK = {"largest": "LA", "smallest": "SA", "both": "BE", "magnitude": "LM"}
#: relative asymmetry max|A - A^T| / max|A| accepted from a dense input (autodiff Hessians: ~1e-16)
SYMMETRY_TOL = 1e-8


@dataclass(frozen=True)
class ExtremeEigenvalues:
    """Result of ``extreme_eigenvalues``.

    Attributes:
        values: (m,) float64 eigenvalues in increasing order (m = 2k for "both", else k).
        vectors: (n, m) unit eigenvectors in the same order, or None.
        residuals: (m,) ``||A u - lambda u||`` (a bound on the distance to an eigenvalue of A) on the Lanczos
            path; None on the dense path (LAPACK: backward error ~ n eps ||A||).
        which: "largest", "smallest", "both" or "magnitude"; k: eigenvalues per end.
        method: "dense" or "lanczos"; num_matvecs: operator products used (columns).
    """

    values: np.ndarray
    vectors: np.ndarray | None
    residuals: np.ndarray | None
    which: str
    k: int
    method: str
    num_matvecs: int

    @property
    def largest(self) -> np.ndarray:
        """(k,) the k largest eigenvalues, decreasing."""
        if self.which not in ("largest", "both"):
            raise ValueError(f"largest needs which='largest' or 'both', the result has which={self.which!r}")
        return self.values[::-1][: self.k].copy()

    @property
    def smallest(self) -> np.ndarray:
        """(k,) the k smallest eigenvalues, increasing."""
        if self.which not in ("smallest", "both"):
            raise ValueError(f"smallest needs which='smallest' or 'both', the result has which={self.which!r}")
        return self.values[: self.k].copy()


@dataclass(frozen=True)
class Conditioning:
    """Conditioning of a symmetric matrix (module docstring for the definitions).

    Attributes:
        kappa: ``|lambda|_max / min |lambda_i|`` over ``|lambda_i| > rtol |lambda|_max``; NaN when not determined
            (matrix-free path, operator indefinite or singular); inf for the zero matrix.
        rank: numerical rank r; -1 when not determined.
        largest, smallest: algebraic extreme eigenvalues lambda_n, lambda_1.
        abs_largest: ``|lambda|_max``; abs_smallest: smallest |lambda| above the tolerance (NaN if not determined).
        dim: n; rtol: the relative tolerance used; method: "dense" or "lanczos".
    """

    kappa: float
    rank: int
    largest: float
    smallest: float
    abs_largest: float
    abs_smallest: float
    dim: int
    rtol: float
    method: str


@dataclass(frozen=True)
class NegativeMass:
    """Negative part of a symmetric spectrum (module docstring for the definitions).

    Attributes:
        fraction: ``nu_-``, share of eigenvalues below ``-rtol |lambda|_max``; fraction_stderr: its standard error.
        mass: ``mu_-``, share of ``sum |lambda_i|`` carried by negative eigenvalues; mass_stderr: its standard error.
        method: "dense" (stderr 0) or "slq" (stderr over probes; delta method for the ratio ``mu_-``).
    """

    fraction: float
    fraction_stderr: float
    mass: float
    mass_stderr: float
    method: str


def _check_which(which: object) -> str:
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    return which  # type: ignore[return-value]


def _check_rtol(rtol: object, n: int) -> float:
    if rtol is None:
        return n * float(np.finfo(np.float64).eps)
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not (0 <= rtol < 1):
        raise ValueError(f"rtol must be None or a float in [0, 1), got {rtol!r}")
    return float(rtol)


def _operator(A: object) -> tuple[Callable[[np.ndarray], np.ndarray], int, np.dtype, np.ndarray | None]:
    """``(matmat, n, dtype, dense)``: ``dense`` is the float64 matrix of a dense input (checked symmetric),
    else None."""
    matmat, n, dtype = as_matmat(A)
    if isinstance(A, LinearOperator):
        return matmat, n, dtype, None
    M = A.matrix if isinstance(A, BlockMatrix) else A
    dense = (M.detach().cpu().numpy() if isinstance(M, torch.Tensor) else np.asarray(M)).astype(np.float64)
    scale = float(np.max(np.abs(dense))) if n else 0.0
    asym = float(np.max(np.abs(dense - dense.T))) if n else 0.0
    if not asym <= SYMMETRY_TOL * scale:
        raise ValueError(
            f"A must be symmetric, got max|A - A^T| = {asym:.3e} for max|A| = {scale:.3e} (relative tolerance "
            f"{SYMMETRY_TOL:g})"
        )
    return matmat, n, dtype, dense


def _densify(
    matmat: Callable[[np.ndarray], np.ndarray], n: int, dtype: np.dtype, dense: np.ndarray | None
) -> np.ndarray:
    M = np.asarray(matmat(np.eye(n, dtype=dtype)), dtype=np.float64) if dense is None else dense
    # an operator's product with e_i is column i; symmetrising removes round-off asymmetry only
    return 0.5 * (M + M.T)


def _spectrum(A: object) -> np.ndarray:
    """Every eigenvalue of A by LAPACK (an operator is applied to the identity first)."""
    return np.linalg.eigvalsh(_densify(*_operator(A)))


def _check_threshold(dense_threshold: object) -> int:
    return check_int("dense_threshold", dense_threshold, low=0)


def extreme_eigenvalues(
    A: object,
    k: int = 1,
    which: str = "both",
    *,
    dense_threshold: int = DENSE_THRESHOLD,
    tol: float = 1e-10,
    seed: int = 0,
    maxiter: int | None = None,
    return_vectors: bool = False,
) -> ExtremeEigenvalues:
    """The k largest and/or k smallest (algebraic) eigenvalues of a symmetric operator.

    Args:
        A: symmetric (n, n) ``CurvatureOperator`` (``Curvature.operator()``), scipy LinearOperator, numpy array,
            torch tensor or BlockMatrix.
        k: eigenvalues per end, 1 <= k < n (for "both" on the Lanczos path 2k < n).
        which: "largest", "smallest", "both" (k at each end) or "magnitude" (k largest |lambda|).
        dense_threshold: n <= dense_threshold uses LAPACK on the dense matrix (an operator costs n products);
            0 forces Lanczos.
        tol: Lanczos accuracy relative to ``|lambda|_max``: ARPACK's criterion ``||A u - theta u|| <= tol |theta|`` is
            applied to ``A +- |lambda|_max I``, so each end is resolved to ~2 tol |lambda|_max even next to 0.
        seed: seed of the Lanczos start vector.
        maxiter: ARPACK restarts limit per run (None: scipy's default, 10 n); ``ArpackNoConvergence`` beyond it.
        return_vectors: also return the eigenvectors.

    Returns:
        ExtremeEigenvalues with float64 ``values`` in increasing order; ``.largest`` / ``.smallest`` give each end.

    Raises:
        ValueError: k out of range, unknown ``which``, non-square or (dense input) non-symmetric A.
        TypeError: A of an unsupported type, non-integer k.

    Example:
        >>> extreme_eigenvalues(np.diag([3.0, -1.0, 2.0, 0.5]), k=1).values.tolist()
        [-1.0, 3.0]
    """
    which = _check_which(which)
    check_int("k", k)
    dense_threshold = _check_threshold(dense_threshold)
    matmat, n, dtype, dense = _operator(A)
    if k >= n:
        raise ValueError(
            f"k={k} must be smaller than the dimension n={n}; use numpy.linalg.eigvalsh for the whole spectrum"
        )
    if not (isinstance(tol, (int, float)) and 0 <= tol < 1):
        raise ValueError(f"tol must be a float in [0, 1), got {tol!r}")
    if n <= dense_threshold:
        M = _densify(matmat, n, dtype, dense)
        lam, U = np.linalg.eigh(M) if return_vectors else (np.linalg.eigvalsh(M), None)
        if which == "largest":
            idx = np.arange(n - k, n)
        elif which == "smallest":
            idx = np.arange(k)
        elif which == "both":
            idx = np.unique(np.r_[np.arange(k), np.arange(n - k, n)])
        else:
            idx = np.sort(np.argsort(-np.abs(lam), kind="stable")[:k])
        return ExtremeEigenvalues(
            lam[idx], None if U is None else U[:, idx], None, which, k, "dense", 0 if dense is not None else n
        )
    m = 2 * k if which == "both" else k
    if m >= n:
        raise ValueError(
            f"k={k} at both ends needs 2k < n={n} for Lanczos; raise dense_threshold to use the dense path"
        )
    count = [0]

    def mm(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X).reshape(n, -1)
        count[0] += X.shape[1]
        return np.asarray(matmat(X.astype(dtype)), dtype=np.float64)

    v0 = np.random.default_rng(seed).standard_normal(n)
    ncv = min(n, max(2 * k + 1, 20))

    def run(shift: float, k_: int, arpack: str) -> tuple[np.ndarray, np.ndarray]:
        op = LinearOperator(
            (n, n), matvec=lambda x: mm(x)[:, 0] + shift * x, matmat=lambda X: mm(X) + shift * X, dtype=np.float64
        )
        lam, U = eigsh(op, k=k_, which=arpack, tol=tol, v0=v0, maxiter=maxiter, ncv=ncv)
        return lam - shift, U

    if which == "magnitude":
        lam, U = run(0.0, k, "LM")
    else:
        # ARPACK stops at ||A u - theta u|| <= tol |theta|, unreachable for theta ~ 0 (a PSD block's bottom);
        # shifting by s = |lambda|_max makes the targets of size ~s: absolute accuracy ~tol |lambda|_max
        # any s ~ |lambda|_max will do: the largest |Ritz value| of 10 Lanczos steps (<= |lambda|_max, by interlacing)
        alpha, beta = lanczos(mm, v0, min(n, 10))
        s = float(np.abs(np.linalg.eigvalsh(np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1))).max())
        parts = []
        if which in ("smallest", "both"):
            parts.append(run(-s, k, "SA"))
        if which in ("largest", "both"):
            parts.append(run(s, k, "LA"))
        lam, U = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts], axis=1)
    order = np.argsort(lam)
    lam, U = lam[order], U[:, order]
    residuals = np.linalg.norm(mm(U) - U * lam, axis=0)
    return ExtremeEigenvalues(lam, U if return_vectors else None, residuals, which, k, "lanczos", count[0])


def conditioning_from_eigenvalues(eigenvalues: np.ndarray, *, rtol: float | None = None) -> Conditioning:
    """Condition number and numerical rank from a full spectrum (module docstring for the definitions).

    Args:
        eigenvalues: (n,) every eigenvalue of a symmetric matrix, any order.
        rtol: relative rank tolerance (None: n eps).

    Returns:
        Conditioning with method "dense".

    Example:
        >>> c = conditioning_from_eigenvalues(np.array([-4.0, 0.0, 0.5, 2.0]))
        >>> (c.kappa, c.rank)
        (8.0, 3)
    """
    lam = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())
    if lam.size == 0 or not np.all(np.isfinite(lam)):
        raise ValueError(
            f"eigenvalues must be a non-empty finite array, got {lam.size} values ({int(np.sum(~np.isfinite(lam)))} "
            "non-finite)"
        )
    rtol = _check_rtol(rtol, lam.size)
    a = np.abs(lam)
    amax = float(a.max())
    kept = a[a > rtol * amax]
    amin = float(kept.min()) if kept.size else float("nan")
    kappa = amax / amin if kept.size else float("inf")
    return Conditioning(kappa, int(kept.size), float(lam[-1]), float(lam[0]), amax, amin, int(lam.size), rtol, "dense")


def negative_mass_from_eigenvalues(eigenvalues: np.ndarray, *, rtol: float | None = None) -> NegativeMass:
    """``nu_-`` and ``mu_-`` of a full spectrum (module docstring); standard errors 0.

    Example:
        >>> r = negative_mass_from_eigenvalues(np.array([-3.0, 1.0, 2.0, 0.0]))
        >>> (r.fraction, r.mass)
        (0.25, 0.5)
    """
    lam = np.asarray(eigenvalues, dtype=np.float64).ravel()
    if lam.size == 0 or not np.all(np.isfinite(lam)):
        raise ValueError(f"eigenvalues must be a non-empty finite array, got {lam.size} values")
    rtol = _check_rtol(rtol, lam.size)
    a = np.abs(lam)
    total = float(a.sum())
    fraction = float(np.mean(lam < -rtol * a.max()))
    mass = float(a[lam < 0].sum() / total) if total > 0 else 0.0
    return NegativeMass(fraction, 0.0, mass, 0.0, "dense")


def condition_number(
    A: object,
    *,
    rtol: float | None = None,
    dense_threshold: int = DENSE_THRESHOLD,
    tol: float = 1e-10,
    seed: int = 0,
    maxiter: int | None = None,
) -> Conditioning:
    """Condition number ``kappa = |lambda|_max / |lambda|_min`` over the numerical range, and the numerical rank.

    Dense path (n <= dense_threshold): the full spectrum, exact. Lanczos path: both ends by ``eigsh``; kappa and
    the rank are determined only when the operator is definite (``lambda_1 lambda_n > 0`` and
    ``min(|lambda_1|, |lambda_n|) > rtol |lambda|_max``), otherwise NaN and -1 (the smallest |lambda| is interior).

    Args:
        A: symmetric (n, n) operator, array, tensor or BlockMatrix (e.g. ``problem.H_o.operator()``).
        rtol: relative rank tolerance (None: n eps).
        dense_threshold: largest n for the dense path (0: always Lanczos).
        tol: Lanczos accuracy relative to |lambda|_max (``extreme_eigenvalues``).
        seed: Lanczos start vector seed.
        maxiter: ARPACK restarts limit per run (None: scipy's default).

    Returns:
        Conditioning (kappa, rank, extreme eigenvalues, method).

    Raises:
        ValueError: bad rtol, dense_threshold, non-square or non-symmetric A, n < 3 on the Lanczos path.
        scipy.sparse.linalg.ArpackNoConvergence: Lanczos not converged within ``maxiter``.
    """
    n = as_matmat(A)[1]
    rtol = _check_rtol(rtol, n)
    if n <= _check_threshold(dense_threshold):
        return conditioning_from_eigenvalues(_spectrum(A), rtol=rtol)
    ends = extreme_eigenvalues(A, 1, "both", dense_threshold=0, tol=tol, seed=seed, maxiter=maxiter)
    return conditioning_from_extremes(float(ends.values[0]), float(ends.values[-1]), n, rtol=rtol)


def conditioning_from_extremes(smallest: float, largest: float, dim: int, *, rtol: float | None = None) -> Conditioning:
    """Conditioning known from the two algebraic ends only (method "lanczos").

    kappa and the rank (= dim) are determined when the spectrum is definite: both ends of one sign and
    ``min(|smallest|, |largest|) > rtol max(|smallest|, |largest|)``; otherwise NaN and -1 (interior smallest |lambda|).

    Example:
        >>> conditioning_from_extremes(0.5, 4.0, 10).kappa
        8.0
    """
    rtol = _check_rtol(rtol, dim)
    lo, hi = float(smallest), float(largest)
    amax, near = max(abs(lo), abs(hi)), min(abs(lo), abs(hi))
    if lo * hi > 0 and near > rtol * amax:
        return Conditioning(amax / near, dim, hi, lo, amax, near, dim, rtol, "lanczos")
    return Conditioning(float("nan"), -1, hi, lo, amax, float("nan"), dim, rtol, "lanczos")


def negative_mass(
    A: object,
    *,
    rtol: float | None = None,
    dense_threshold: int = DENSE_THRESHOLD,
    num_probes: int = 10,
    num_steps: int = 40,
    seed: int = 0,
) -> NegativeMass:
    """Negative fraction ``nu_-`` and negative mass ``mu_-`` of a symmetric spectrum.

    Dense path: exact from LAPACK. Otherwise stochastic Lanczos quadrature: per Rademacher probe p the Ritz values
    ``theta_j`` and weights ``tau_j^2`` give ``s_p = sum_j tau_j^2 1[theta_j < -rtol theta_max]`` (the SLQ density
    integrated over lambda < 0 at zero kernel width), ``a_p = sum_j tau_j^2 max(-theta_j, 0)`` and
    ``b_p = sum_j tau_j^2 |theta_j|``; ``nu_- = mean s_p``, ``mu_- = mean a_p / mean b_p``. With
    ``num_steps = n`` the quadrature is exact and each sample is Hutchinson's ``v^T f(A) v / n``, unbiased.
    With fewer steps ``nu_-`` (a step function of lambda) is biased when much of the spectrum sits at 0, as for a
    rank-deficient Hessian block: the Ritz node that stands for that cluster falls on either side of 0 (a d_model
    128 W_Q block gave nu_- = 0.98 with mu_- = 0.48). ``mu_-`` integrates the continuous ``max(-lambda, 0)`` and
    ``|lambda|``: it is the robust one.

    Args:
        A: symmetric (n, n) operator, array, tensor or BlockMatrix.
        rtol: relative tolerance under which an eigenvalue counts as zero (None: n eps).
        dense_threshold: largest n for the dense path (0: always SLQ).
        num_probes: SLQ probes; num_steps: Lanczos steps per probe (<= n).
        seed: probe seed.

    Returns:
        NegativeMass with standard errors (0 on the dense path).
    """
    n = as_matmat(A)[1]
    rtol = _check_rtol(rtol, n)
    if n <= _check_threshold(dense_threshold):
        return negative_mass_from_eigenvalues(_spectrum(A), rtol=rtol)
    density = spectral_density(A, num_probes=num_probes, num_steps=num_steps, seed=seed, num_points=2)
    theta_max = max(float(np.max(np.abs(x))) for x in density.nodes)
    s = np.array([np.sum(w * (x < -rtol * theta_max)) for x, w in zip(density.nodes, density.weights)])
    a = np.array([np.sum(w * np.maximum(-x, 0.0)) for x, w in zip(density.nodes, density.weights)])
    b = np.array([np.sum(w * np.abs(x)) for x, w in zip(density.nodes, density.weights)])
    se = lambda x: float(mean_and_stderr(x)[1])  # noqa: E731
    mass = float(a.mean() / b.mean()) if b.mean() > 0 else 0.0
    # delta method for a ratio of means: var(a - mass b) / (P mean(b)^2)
    mass_se = se(a - mass * b) / float(b.mean()) if b.mean() > 0 else 0.0
    return NegativeMass(float(s.mean()), se(s), mass, mass_se, "slq")
