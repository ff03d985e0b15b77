"""Numba kernel of the finite-volume scheme: MUSCL reconstruction with the van Leer limiter
and the upwind flux on a periodic grid.

Pure function of arrays and scalars; the result goes into ``out``. Serial: one grid of a few
thousand cells costs far less than a thread barrier.
"""

import numpy as np
from numba import njit


@njit(cache=True)
def _van_leer(a, b):
    """Limited slope 2ab / (a + b) when a and b share a sign, else 0 (van Leer, 1974)."""
    if a * b <= 0.0:
        return 0.0
    return 2.0 * a * b / (a + b)


@njit(cache=True)
def muscl_rhs(rho, u_face, h, out):
    """out_i = -(F_{i+1/2} - F_{i-1/2}) / h with F_{i+1/2} = u^+ rho^L + u^- rho^R.

    rho^L_{i+1/2} = rho_i + s_i / 2 and rho^R_{i+1/2} = rho_{i+1} - s_{i+1} / 2 with the van
    Leer slopes s_i: |s_i| <= 2 min(|rho_i - rho_{i-1}|, |rho_{i+1} - rho_i|), so the
    reconstructed values lie between neighbouring averages and stay >= 0. The fluxes
    telescope: sum(out) = 0 to rounding.

    Args:
        rho: (M,) cell averages. u_face: (M,) velocity at theta_i + h / 2. h: cell width.
        out: (M,) result.
    """
    M = rho.shape[0]
    slope = np.empty(M)
    for i in range(M):
        slope[i] = _van_leer(rho[i] - rho[i - 1], rho[(i + 1) % M] - rho[i])
    flux = np.empty(M)
    for i in range(M):
        j = (i + 1) % M
        u = u_face[i]
        if u > 0.0:
            flux[i] = u * (rho[i] + 0.5 * slope[i])
        else:
            flux[i] = u * (rho[j] - 0.5 * slope[j])
    for i in range(M):
        out[i] = -(flux[i] - flux[i - 1]) / h


@njit(cache=True)
def step_rate(u_face, h):
    """max(max|u| / h, max|u_{i+1/2} - u_{i-1/2}| / h): the inverse of the largest stable step
    at Courant number 1 (advection and compression limits)."""
    speed = 0.0
    strain = 0.0
    for i in range(u_face.shape[0]):
        speed = max(speed, abs(u_face[i]))
        strain = max(strain, abs(u_face[i] - u_face[i - 1]))
    return max(speed, strain) / h
