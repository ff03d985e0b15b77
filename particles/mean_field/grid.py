r"""The uniform grid of the circle and the densities that live on it.

Cell k of M is centred at theta_k = 2 pi k / M and has width h = 2 pi / M; a density is the
(M,) array of its cell averages, non-negative with sum(rho) * h = 1.

The kernel e^{beta cos psi} = I_0(beta) + 2 sum_m I_m(beta) cos(m psi) must be resolved by
the grid: its Fourier coefficients I_m(beta) / I_0(beta) decay like exp(-m^2 / (2 beta)), and
a grid of M points represents modes |m| < M / 2 only. ``minimum_grid(beta)`` is the smallest
even M whose first unresolved mode has I_{M/2-1}(beta) / I_0(beta) <= 1e-6, about
10.5 sqrt(beta) for large beta.
"""

import numpy as np
from scipy.special import ive

from ..checks import as_float_array, check_finite, check_int, check_real

# The relative size of the first Fourier mode of e^{beta cos} that the grid may leave out.
KERNEL_TAIL = 1e-6
# A density integrates to 1 within this (relative to the rounding of M additions).
MASS_TOL = 1e-9
# The fewest cells of any grid: the MUSCL stencil needs two neighbours on each side.
MIN_CELLS = 8


def grid(M):
    """The cell centres theta_k = 2 pi k / M, k = 0..M-1, of the uniform grid.

    Example:
        >>> grid(4) / np.pi
        array([0. , 0.5, 1. , 1.5])
    """
    M = check_int("M", M, low=MIN_CELLS // 2)
    return 2.0 * np.pi * np.arange(M) / M


def minimum_grid(beta):
    """The smallest even M >= 8 with I_{M/2-1}(beta) / I_0(beta) <= 1e-6.

    Example:
        >>> minimum_grid(0.0), minimum_grid(5.0), minimum_grid(100.0)
        (8, 30, 110)
    """
    beta = check_real("beta", beta, low=0.0)
    if beta == 0.0:
        return MIN_CELLS
    # ive(m, beta) / ive(0, beta) = I_m / I_0 without overflow; it decreases in m.
    m = max(MIN_CELLS // 2 - 1, 1)
    while ive(m, beta) / ive(0, beta) > KERNEL_TAIL:
        m += 1
    return max(MIN_CELLS, 2 * (m + 1))


def check_resolution(M, beta, *, name="rho0"):
    """ValueError naming ``name`` when a grid of M cells is too coarse for ``beta``."""
    need = minimum_grid(beta)
    if M < need:
        raise ValueError(
            f"{name} has M = {M} cells, too coarse for beta = {beta:g}: the kernel e^(beta cos) needs "
            f"M >= {need} (about 10.5 sqrt(beta)); refine the grid"
        )


def check_density(name, rho, *, M=None):
    """A non-negative (M,) density on the uniform grid with unit mass, as float64.

    Raises:
        TypeError: not a float array.
        ValueError: wrong shape, negative or non-finite entries, or mass != 1; the message
            names ``name``, the value received and what was expected.
    """
    rho = as_float_array(name, rho)
    if rho.ndim != 1 or rho.shape[0] < MIN_CELLS:
        raise ValueError(f"{name} must be a 1-D density on M >= {MIN_CELLS} cells, got shape {rho.shape}")
    if M is not None and rho.shape[0] != M:
        raise ValueError(f"{name} must live on the grid of {M} cells, got {rho.shape[0]}")
    check_finite(name, rho)
    rho = rho.astype(np.float64)
    if rho.min() < 0:
        k = int(np.argmin(rho))
        raise ValueError(f"{name} must be non-negative, got {float(rho[k])!r} at cell {k}")
    mass = rho.sum() * 2.0 * np.pi / rho.shape[0]
    if abs(mass - 1.0) > MASS_TOL:
        raise ValueError(
            f"{name} must have unit mass, sum(rho) * 2 pi / M = 1, got {float(mass)!r}; divide by that to normalise"
        )
    return rho


def normalise(values):
    """``values`` (M,) >= 0 scaled to a density of unit mass on the uniform grid."""
    values = np.asarray(values, dtype=np.float64)
    return values / (values.sum() * 2.0 * np.pi / values.shape[0])


def check_theta(name, theta, M):
    """``theta`` must be the uniform grid of M cells (within 1e-12)."""
    theta = as_float_array(name, theta)
    if theta.shape != (M,) or np.max(np.abs(theta - grid(M))) > 1e-12:
        raise ValueError(
            f"{name} must be the uniform grid theta_k = 2 pi k / M of the density's M = {M} cells, "
            f"got shape {theta.shape}"
            + (f" with largest deviation {np.max(np.abs(theta - grid(M))):.3g}" if theta.shape == (M,) else "")
        )
    return theta.astype(np.float64)
