"""particles.mean_field._flux_kernels: the Numba MUSCL flux against plain NumPy, its
conservation and positivity."""

import numpy as np

from particles.mean_field._flux_kernels import muscl_rhs
from tests import naive


def test_numba_flux_equals_numpy_reference(rng):
    M = 40
    rho = rng.random(M) ** 3
    rho[5:9] = 0.0
    u = rng.standard_normal(M)
    out = np.empty(M)
    muscl_rhs(rho, u, 0.1, out)
    np.testing.assert_allclose(out, naive.muscl_rhs(rho, u, 0.1), rtol=1e-14, atol=1e-14)
    assert abs(out.sum()) < 1e-13 * np.abs(out).sum()


def test_one_euler_step_at_cfl_half_stays_non_negative(rng):
    M, h = 64, 2 * np.pi / 64
    for _ in range(20):
        rho = rng.random(M) * (rng.random(M) < 0.5)  # rough, with empty cells
        u = rng.standard_normal(M)
        out = np.empty(M)
        muscl_rhs(rho, u, h, out)
        dt = 0.5 * h / np.abs(u).max()
        assert (rho + dt * out).min() >= -1e-15
