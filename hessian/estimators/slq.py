"""Spectral density by stochastic Lanczos quadrature (Golub & Meurant, 2009; Ghorbani, Krishnan & Xiao, 2019).

For a Rademacher probe v and m Lanczos steps from q_1 = v/|v|, the Ritz values theta_j and squared first
components tau_j^2 of the tridiagonal T_m's eigenvectors give the Gauss quadrature
``v^T f(A) v / n = sum_j tau_j^2 f(theta_j)``, exact for polynomials of degree <= 2m - 1. Averaging over
probes estimates the spectral measure ``(1/n) sum_i delta(lambda_i)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..checks import check_int
from .base import Estimate, as_matmat, check_samples, mean_and_stderr, rademacher


def lanczos(matmat: Callable[[np.ndarray], np.ndarray], v: np.ndarray, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """m-step Lanczos with full reorthogonalisation.

    Args:
        matmat: (n, k) -> (n, k) product with a symmetric A.
        v: (n,) start vector.
        num_steps: m <= n.

    Returns:
        (alpha (m',), beta (m' - 1,)) of the tridiagonal matrix; m' < m if the Krylov space is exhausted.
    """
    n = v.shape[0]
    Q = np.zeros((n, num_steps))
    alpha, beta = [], []
    q = v / np.linalg.norm(v)
    for j in range(num_steps):
        Q[:, j] = q
        w = np.asarray(matmat(q[:, None].astype(v.dtype)), dtype=np.float64)[:, 0]
        alpha.append(float(q @ w))
        # twice-is-enough Gram-Schmidt against all previous vectors keeps Ritz values free of ghosts
        for _ in range(2):
            w = w - Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)
        b = float(np.linalg.norm(w))
        if j == num_steps - 1 or b <= 1e-12 * max(1.0, abs(alpha[-1])):
            break
        beta.append(b)
        q = w / b
    return np.array(alpha), np.array(beta)


@dataclass(frozen=True)
class SpectralDensity:
    """Result of ``spectral_density``.

    Attributes:
        nodes: list over probes of (m',) Ritz values.
        weights: list over probes of (m',) quadrature weights (each sums to 1).
        grid: (G,) evaluation points; density: (G,) smoothed density (integrates to ~1);
        stderr: (G,) standard error of the density over probes; kernel_width: Gaussian sigma used.
        dim: n; num_matvecs: operator products used (fewer than probes x steps if a Krylov space ran out).
    """

    nodes: list[np.ndarray]
    weights: list[np.ndarray]
    grid: np.ndarray
    density: np.ndarray
    stderr: np.ndarray
    kernel_width: float
    dim: int
    num_matvecs: int

    def expectation(self, f: Callable[[np.ndarray], np.ndarray]) -> Estimate:
        """``tr f(A)`` estimated as ``n * mean_probes sum_j tau_j^2 f(theta_j)``, with its stderr.

        The stderr is the probe noise only: it leaves out the quadrature error, which is zero for
        polynomials of degree <= 2m - 1 and small for f smooth on the spectrum (m Lanczos steps).
        """
        samples = np.array([self.dim * np.sum(w * f(x)) for x, w in zip(self.nodes, self.weights)])
        mean, se = mean_and_stderr(samples)
        return Estimate(float(mean), float(se), self.num_matvecs)


def spectral_density(
    A: object,
    *,
    num_probes: int = 10,
    num_steps: int = 30,
    grid: np.ndarray | None = None,
    num_points: int = 512,
    kernel_width: float | None = None,
    seed: int = 0,
) -> SpectralDensity:
    """Smoothed spectral density of a symmetric operator by stochastic Lanczos quadrature.

    Args:
        A: symmetric (n, n) LinearOperator (e.g. ``Curvature.operator()``), array, tensor or BlockMatrix.
        num_probes: Rademacher probes.
        num_steps: Lanczos steps per probe, <= n.
        grid: (G,) points at which to evaluate; default: ``num_points`` points spanning the Ritz values
            with a margin of 5 kernel widths.
        num_points: size of the default grid.
        kernel_width: Gaussian kernel sigma; default 1% of the Ritz value range (or 1e-3 if it is 0).
        seed: probe seed.

    Returns:
        SpectralDensity (nodes, weights, grid, density, stderr, kernel_width); ``.expectation(f)`` estimates tr f(A).

    Raises:
        ValueError: num_steps > n, non-positive counts, bad kernel width.
    """
    matmat, n, dtype = as_matmat(A)
    check_samples("num_probes", num_probes, n)
    check_samples("num_steps", num_steps, n, at_most_dim=True)
    check_int("num_points", num_points)
    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    for _ in range(num_probes):
        alpha, beta = lanczos(matmat, rademacher(rng, n, 1, dtype)[:, 0], num_steps)
        T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
        theta, S = np.linalg.eigh(T)
        nodes.append(theta)
        weights.append(S[0] ** 2)
    all_nodes = np.concatenate(nodes)
    lo, hi = float(all_nodes.min()), float(all_nodes.max())
    if kernel_width is None:
        kernel_width = 0.01 * (hi - lo) if hi > lo else 1e-3 * max(1.0, abs(hi))
    if not (np.isfinite(kernel_width) and kernel_width > 0):
        raise ValueError(f"kernel_width must be a positive finite float, got {kernel_width}")
    if grid is None:
        grid = np.linspace(lo - 5 * kernel_width, hi + 5 * kernel_width, num_points)
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1:
        raise ValueError(f"grid must be 1-D, got shape {grid.shape}")
    per_probe = np.array(
        [
            (w[None, :] * np.exp(-0.5 * ((grid[:, None] - x[None, :]) / kernel_width) ** 2)).sum(1)
            / (kernel_width * np.sqrt(2 * np.pi))
            for x, w in zip(nodes, weights)
        ]
    )
    density, stderr = mean_and_stderr(per_probe)
    # one product per Lanczos step, i.e. per Ritz value
    num_matvecs = sum(x.size for x in nodes)
    return SpectralDensity(nodes, weights, grid, density, stderr, float(kernel_width), n, num_matvecs)
