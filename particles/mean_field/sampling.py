"""Particles drawn from a density on the grid: the link from the PDE to ``particles.simulate``."""

import numpy as np

from ..checks import check_int
from .grid import check_density


def sample_angles(rho, n, *, seed=0, batch=None):
    """n angles drawn independently from the piecewise-constant density ``rho``.

    A cell is drawn with probability rho_k * 2 pi / M, then a point uniformly inside it
    ([theta_k - pi / M, theta_k + pi / M)).

    Args:
        rho: (M,) density on the uniform grid. n: >= 1. seed: of ``numpy.random.default_rng``.
        batch: None for (n,) angles, or a number of independent draws (batch, n).

    Returns:
        angles in [0, 2 pi), sorted within each draw.
    """
    rho = check_density("rho", rho)
    n = check_int("n", n, low=1)
    shape = (n,) if batch is None else (check_int("batch", batch, low=1), n)
    M = rho.shape[0]
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(rho) / rho.sum()
    cells = np.minimum(np.searchsorted(cdf, rng.random(shape), side="right"), M - 1)
    angles = 2.0 * np.pi * (cells + rng.random(shape) - 0.5) / M
    return np.sort(np.mod(angles, 2.0 * np.pi), axis=-1)


def angles_to_points(angles):
    """(..., n) angles -> (..., n, 2) unit vectors (cos, sin)."""
    angles = np.asarray(angles, dtype=np.float64)
    return np.stack([np.cos(angles), np.sin(angles)], axis=-1)


def points_to_angles(x):
    """(..., n, 2) unit vectors -> (..., n) angles in [0, 2 pi)."""
    x = np.asarray(x)
    return np.mod(np.arctan2(x[..., 1], x[..., 0]), 2.0 * np.pi)


def histogram_density(angles, M):
    """The empirical measure of ``angles`` (n,) binned on the M cells of the uniform grid, as
    a density (cell averages, unit mass)."""
    M = check_int("M", M, low=1)
    cells = np.floor(np.mod(np.asarray(angles, dtype=np.float64) * M / (2.0 * np.pi) + 0.5, M)).astype(np.int64) % M
    counts = np.bincount(cells, minlength=M).astype(np.float64)
    return counts * M / (2.0 * np.pi * counts.sum())
