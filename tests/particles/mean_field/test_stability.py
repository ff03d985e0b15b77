"""particles.mean_field.stability: the linearised rates against the closed forms and against
the growth of a small Fourier perturbation under the solver."""

import numpy as np
import pytest
from scipy.special import iv

from particles.mean_field import grid, growth_rates, solve


@pytest.mark.parametrize("beta", [0.0, 0.7, 4.0])
def test_identity_rates_are_the_closed_forms(beta):
    ks = np.arange(1, 6)
    usa = growth_rates(ks, beta=beta, dynamics="USA")
    sa = growth_rates(ks, beta=beta, dynamics="SA")
    closed = ks**2 * iv(ks, beta) / beta if beta else np.where(ks == 1, 0.5, 0.0)
    np.testing.assert_allclose(usa, closed, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sa, closed / iv(0, beta), rtol=1e-12, atol=1e-15)


def measured_rate(k, M=128, eps=1e-6, t_max=1.0, **kwargs):
    theta = grid(M)
    rho0 = (1 + eps * np.cos(k * theta) * np.sinc(k / M)) / (2 * np.pi)
    sol = solve(rho0, t_max=t_max, frames=11, **kwargs)
    coeff = np.fft.rfft(sol.rho, axis=1)[:, k]
    growth = np.polyfit(sol.ts, np.log(np.abs(coeff)), 1)[0]
    turn = np.polyfit(sol.ts, np.unwrap(np.angle(coeff)), 1)[0]
    return growth + 1j * turn


@pytest.mark.parametrize("beta, dynamics, k", [(1.0, "USA", 1), (3.0, "SA", 2), (3.0, "USA", 3)])
def test_small_perturbation_grows_at_the_linear_rate(beta, dynamics, k):
    rate = measured_rate(k, beta=beta, dynamics=dynamics)
    expected = growth_rates([k], beta=beta, dynamics=dynamics)[0]
    # Measured relative errors 1e-4 .. 2e-3 on 128 cells (the scheme's O(h^2) at mode k).
    assert abs(rate - expected) < 5e-3 * abs(expected), (rate, expected)


def test_rotations_give_the_complex_rate():
    c, a = 0.5, 0.3
    V = 1.2 * np.array([[np.cos(c), -np.sin(c)], [np.sin(c), np.cos(c)]])
    Q = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    for dynamics in ("SA", "USA"):
        expected = growth_rates([2], beta=2.0, dynamics=dynamics, Q=Q, V=V)[0]
        rate = measured_rate(2, beta=2.0, dynamics=dynamics, Q=Q, V=V)
        assert abs(expected.imag) > 0.1
        assert abs(rate - expected) < 5e-3 * abs(expected), (dynamics, rate, expected)
