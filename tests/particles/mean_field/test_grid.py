"""particles.mean_field.grid: the minimum grid for beta, and densities on the grid."""

import numpy as np
import pytest
from scipy.special import iv

from particles.mean_field import grid, minimum_grid, normalise, solve
from particles.mean_field.grid import check_density


@pytest.mark.parametrize("beta", [0.5, 5.0, 30.0, 200.0])
def test_minimum_grid_is_the_smallest_even_grid_resolving_the_kernel(beta):
    M = minimum_grid(beta)
    assert M % 2 == 0
    # The first mode it leaves out is below 1e-6 of the mean, the previous even grid's is not.
    assert iv(M // 2 - 1, beta) / iv(0, beta) <= 1e-6
    if M > 8:
        assert iv(M // 2 - 2, beta) / iv(0, beta) > 1e-6
    assert 0.8 * 10.5 * np.sqrt(beta) < M < 1.3 * 10.5 * np.sqrt(beta) + 10


def test_grid_points():
    np.testing.assert_allclose(grid(8), np.pi * np.arange(8) / 4, rtol=0, atol=0)


def test_too_coarse_grid_names_the_minimum():
    rho0 = np.full(16, 1 / (2 * np.pi))
    with pytest.raises(
        ValueError, match=rf"rho0 has M = 16 cells, too coarse for beta = 20.*M >= {minimum_grid(20.0)}"
    ):
        solve(rho0, beta=20.0, t_max=1.0)
    # Q K scales beta: q k = 4 makes beta = 5 need the grid of beta = 20.
    with pytest.raises(ValueError, match="too coarse for beta = 20"):
        solve(np.full(40, 1 / (2 * np.pi)), beta=5.0, t_max=1.0, Q=2 * np.eye(2), K=2 * np.eye(2))


def test_bad_densities_name_the_argument():
    theta = grid(32)
    good = normalise(1 + np.cos(theta))
    bad = good.copy()
    bad[3] = -1e-3
    with pytest.raises(ValueError, match="rho0 must be non-negative, got -0.001 at cell 3"):
        solve(bad, beta=1.0, t_max=1.0)
    with pytest.raises(ValueError, match="rho0 must have unit mass.*got 1.99999"):
        solve(2 * good, beta=1.0, t_max=1.0)
    with pytest.raises(ValueError, match="rho0 must be a 1-D density"):
        solve(good[None], beta=1.0, t_max=1.0)
    with pytest.raises(TypeError, match="rho0 must be a float64 or float32 array"):
        solve(np.ones(32, dtype=int), beta=1.0, t_max=1.0)
    with pytest.raises(ValueError, match="rho must be finite"):
        check_density("rho", np.full(32, np.nan))
