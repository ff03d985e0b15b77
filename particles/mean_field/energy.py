r"""The interaction energy of a density and its rate of change along the flow.

E_beta[rho] = (1 / (2 beta)) double integral of e^{beta cos(theta - phi)} rho(theta) rho(phi)
is non-decreasing along the continuity equation with Q = K = V = I: from the equation and an
integration by parts (theory note, section 1),

$$\frac{dE_\beta}{dt} = \int |X[\rho]|^2\, Z[\rho]\, \rho\, d\theta,$$

with Z = 1 for USA (the Wasserstein gradient-flow identity dE/dt = integral of |X|^2 dmu) and
Z = integral of e^{beta cos(theta - phi)} rho(phi) dphi for SA.
"""

import numpy as np
from scipy.special import ive

from ..checks import check_choice, check_real
from .grid import check_density, check_theta
from .kernel import FaceVelocity, Interaction


def _checked(theta, rho, beta):
    beta = check_real("beta", beta, low=0.0, low_inclusive=False)
    rho = np.asarray(rho, dtype=np.float64)
    rows = rho.reshape(-1, rho.shape[-1])
    for row in rows:
        check_density("rho", row)
    check_theta("theta", theta, rows.shape[1])
    return rows, beta


def energy(theta, rho, beta):
    """E_beta of densities on the uniform grid (midpoint rule, O(h^2) for cell averages).

    Args:
        theta: (M,) grid. rho: (M,) or (T, M) densities. beta: > 0.

    Returns:
        float, or (T,) array.

    Example:
        >>> import numpy as np
        >>> from scipy.special import iv
        >>> from particles.mean_field import grid
        >>> theta = grid(64)
        >>> uniform = np.full(64, 1 / (2 * np.pi))
        >>> bool(np.isclose(energy(theta, uniform, 2.0), iv(0, 2.0) / 4, rtol=1e-14))
        True
    """
    rows, beta = _checked(theta, rho, beta)
    M = rows.shape[1]
    h = 2.0 * np.pi / M
    psi = h * np.arange(M)
    kernel = h * np.fft.rfft(np.exp(beta * (np.cos(psi) - 1.0)))
    conv = np.fft.irfft(kernel * np.fft.rfft(rows, axis=1), n=M, axis=1)
    out = np.exp(beta) / (2.0 * beta) * h * np.sum(rows * conv, axis=1)
    return out if np.ndim(rho) == 2 else float(out[0])


def energy_rate(theta, rho, beta, dynamics="SA"):
    """integral of |X|^2 Z rho, the dE/dt of the flow at rho (Q = K = V = I).

    Args:
        theta: (M,) grid. rho: (M,) or (T, M) densities. beta: > 0. dynamics: "SA", "USA".

    Returns:
        float, or (T,) array.
    """
    rows, beta = _checked(theta, rho, beta)
    dynamics = check_choice("dynamics", dynamics, ("SA", "USA"))
    M = rows.shape[1]
    velocity = FaceVelocity(Interaction(beta=beta, dynamics=dynamics), M)
    h = 2.0 * np.pi / M
    out = np.empty(len(rows))
    for k, row in enumerate(rows):
        u, Z = velocity.at_centres(row)
        out[k] = h * np.sum(u * u * Z * row)
    return out if np.ndim(rho) == 2 else float(out[0])


def energy_identity_defect(ts, theta, rho, beta, dynamics="SA"):
    """E(t_k) - E(t_0) - integral_0^{t_k} dE/dt dt along a computed trajectory.

    The integral is the composite trapezoid rule on the frames with Richardson's correction
    (the rates' end-point derivative terms), so frames a short time apart leave it much
    below the space discretisation's O(h^2).

    Args:
        ts: (T,) times, increasing. theta: (M,). rho: (T, M). beta, dynamics: the run's.

    Returns:
        (T,) defects, 0 at t_0.
    """
    ts = np.asarray(ts, dtype=np.float64)
    E = energy(theta, rho, beta)
    rate = energy_rate(theta, rho, beta, dynamics)
    dt = np.diff(ts)
    integral = np.concatenate([[0.0], np.cumsum(0.5 * dt * (rate[1:] + rate[:-1]))])
    # Endpoint correction of the trapezoid rule, -dt^2/12 (f'(b) - f'(a)), with one-sided
    # differences of second order: with uniform frames the error drops to O(dt^4).
    if len(ts) >= 3 and np.allclose(dt, dt[0], rtol=1e-9):
        slope = np.gradient(rate, ts, edge_order=2)
        integral -= dt[0] ** 2 / 12.0 * (slope - slope[0])
    return E - E[0] - integral


def empirical_energy(angles, beta):
    r"""E_beta of empirical measures on the circle in O(n sqrt(beta)) instead of O(n^2).

    From e^{beta cos psi} = sum_m I_m(beta) e^{i m psi},

    $$E_\beta = \frac{1}{2\beta}\Big(I_0(\beta) + 2\sum_{m \ge 1} I_m(\beta)\,|\hat\mu_m|^2\Big),
      \qquad \hat\mu_m = \frac{1}{n}\sum_j e^{i m \theta_j},$$

    summed until I_m(beta) / I_0(beta) < 1e-17 (|mu_m| <= 1, so the rest is below rounding).
    Equal to ``particles.energy`` of the points (cos theta_j, sin theta_j).

    Args:
        angles: (..., n) angles. beta: > 0.

    Returns:
        (...) float64 array.
    """
    beta = check_real("beta", beta, low=0.0, low_inclusive=False)
    angles = np.asarray(angles, dtype=np.float64)
    modes = 1
    while ive(modes, beta) / ive(0, beta) >= 1e-17:
        modes += 1
    m = np.arange(1, modes)
    coeff = np.exp(1j * angles[..., None, :] * m[:, None]).mean(axis=-1)
    # In units of e^beta (ive = I e^{-beta}), multiplied back at the end.
    total = ive(0, beta) + 2.0 * np.sum(ive(m, beta) * np.abs(coeff) ** 2, axis=-1)
    return np.exp(beta) * total / (2.0 * beta)
