"""particles.mean_field.energy: the energy against closed forms and the particles', and the
energy identity dE/dt = integral |X|^2 Z rho along computed solutions."""

import numpy as np
import pytest
from scipy.special import iv

import particles
from particles.mean_field import (
    empirical_energy,
    energy,
    energy_identity_defect,
    energy_rate,
    grid,
    normalise,
    sample_angles,
    solve,
)


def test_energy_of_a_cosine_density_is_exact():
    # rho = (1 + a cos) / (2 pi): E = (I_0 + a^2 I_1 / 2) / (2 beta).
    M, a, beta = 64, 0.6, 3.0
    rho = (1 + a * np.cos(grid(M))) / (2 * np.pi)
    assert energy(grid(M), rho, beta) == pytest.approx((iv(0, beta) + a**2 * iv(1, beta) / 2) / (2 * beta), rel=1e-13)


def test_energy_matches_the_particles_of_a_fine_sample():
    M, beta = 256, 2.0
    rho = normalise(np.exp(2 * np.cos(grid(M) - 1.0)))
    angles = sample_angles(rho, 4000, seed=1)
    x = np.stack([np.cos(angles), np.sin(angles)], 1)
    assert particles.energy(x, beta) == pytest.approx(energy(grid(M), rho, beta), rel=2e-2)


def test_usa_energy_identity_defect_shrinks_at_second_order():
    defects = []
    for M in (32, 64, 128):
        theta = grid(M)
        sol = solve(
            normalise(1 + 0.5 * np.cos(theta) + 0.3 * np.sin(2 * theta)),
            beta=1.0,
            t_max=1.0,
            frames=101,
            dynamics="USA",
        )
        E = energy(theta, sol.rho, 1.0)
        assert np.all(np.diff(E) > 0)
        defects.append(np.abs(energy_identity_defect(sol.ts, theta, sol.rho, 1.0, "USA")).max() / (E[-1] - E[0]))
    orders = np.log2(np.array(defects[:-1]) / defects[1:])
    # Measured relative defects 9.0e-3, 1.9e-3, 4.0e-4 (orders 2.3, 2.2).
    assert defects[-1] < 1e-3 and np.all(orders > 1.8), (defects, orders)


def test_sa_energy_rate_has_the_Z_weight():
    # SA's identity carries Z: the SA rate equals the USA rate's integrand weighted by Z / Z^2.
    M, beta = 64, 2.0
    theta = grid(M)
    sol = solve(normalise(1 + 0.5 * np.cos(theta)), beta=beta, t_max=0.5, frames=51)
    defect = energy_identity_defect(sol.ts, theta, sol.rho, beta, "SA")
    E = energy(theta, sol.rho, beta)
    assert np.abs(defect).max() < 2e-3 * (E[-1] - E[0])
    wrong = E - E[0] - np.concatenate([[0], np.cumsum(np.diff(sol.ts) * energy_rate(theta, sol.rho[1:], beta, "USA"))])
    assert np.abs(wrong).max() > 0.1 * (E[-1] - E[0])


def test_energy_needs_positive_beta():
    with pytest.raises(ValueError, match="beta must be > 0"):
        energy(grid(16), np.full(16, 1 / (2 * np.pi)), 0.0)


def test_empirical_energy_equals_the_particles():
    rng = np.random.default_rng(3)
    angles = rng.vonmises(0.5, 2.0, (3, 50))
    x = np.stack([np.cos(angles), np.sin(angles)], -1)
    for beta in (0.3, 5.0, 40.0):
        np.testing.assert_allclose(empirical_energy(angles, beta), particles.energy(x, beta), rtol=1e-13)
