"""particles.mean_field.solve: mass, positivity, order under refinement, the uniform
stationary state, the end time, storage and resume."""

import h5py
import numpy as np
import pytest

from particles.mean_field import coarsen, grid, load_solution, normalise, solve


def cell_averages(M, a=0.5, b=0.3):
    """Exact cell averages of (1 + a cos theta + b sin 2 theta) / (2 pi)."""
    theta = grid(M)
    return (1 + a * np.cos(theta) * np.sinc(1 / M) + b * np.sin(2 * theta) * np.sinc(2 / M)) / (2 * np.pi)


@pytest.mark.parametrize("dynamics, beta, t_max", [("SA", 8.0, 6.0), ("USA", 3.0, 2.0)])
def test_mass_is_conserved_and_density_stays_non_negative(dynamics, beta, t_max, rng):
    M = 64
    rho0 = normalise(rng.random(M) ** 4)  # rough, nearly empty cells
    sol = solve(rho0, beta=beta, t_max=t_max, frames=7, dynamics=dynamics)
    mass = sol.rho.sum(axis=1) * 2 * np.pi / M
    assert np.abs(mass - 1).max() < 1e-12
    assert sol.rho.min() >= 0.0
    assert sol.ts[-1] == t_max and sol.rho.shape == (7, M)


def test_second_order_under_refinement_on_a_smooth_solution():
    # beta = 2, SA, to t = 1: the density stays smooth; reference on 1024 cells, averaged.
    ref = solve(cell_averages(1024), beta=2.0, t_max=1.0, frames=2).rho[-1]
    errors = []
    for M in (32, 64, 128):
        rho = solve(cell_averages(M), beta=2.0, t_max=1.0, frames=2).rho[-1]
        errors.append(np.abs(rho - coarsen(ref, M)).sum() * 2 * np.pi / M)
    orders = np.log2(np.array(errors[:-1]) / errors[1:])
    # Measured: L1 errors 3.3e-3, 8.3e-4, 2.0e-4 (orders 2.01, 2.03).
    assert np.all(orders > 1.8), (errors, orders)


@pytest.mark.parametrize("dynamics", ["SA", "USA"])
def test_uniform_density_is_stationary(dynamics):
    rho0 = np.full(64, 1 / (2 * np.pi))
    sol = solve(rho0, beta=4.0, t_max=10.0, frames=3, dynamics=dynamics)
    assert np.abs(sol.rho - rho0).max() < 1e-15


def test_rotation_V_rotates_the_uniform_state_and_keeps_it():
    # V = R_c: the uniform density rotates at speed -sin c ... uniformly, i.e. stays uniform.
    c = 0.3
    V = np.array([[np.cos(c), -np.sin(c)], [np.sin(c), np.cos(c)]])
    rho0 = np.full(32, 1 / (2 * np.pi))
    sol = solve(rho0, beta=1.0, t_max=2.0, frames=2, V=V)
    assert np.abs(sol.rho[-1] - rho0).max() < 1e-14


def test_store_and_resume_equal_the_uninterrupted_run(tmp_path):
    rho0 = cell_averages(64)
    kwargs = dict(beta=5.0, t_max=3.0, frames=7)
    plain = solve(rho0, **kwargs)
    path = tmp_path / "rho.h5"
    stored = solve(rho0, store=path, **kwargs)
    np.testing.assert_array_equal(stored.rho, plain.rho)
    np.testing.assert_array_equal(stored.ts, plain.ts)
    # Cut the file back to 3 frames (as a killed run leaves it) and resume.
    with h5py.File(path, "a") as f:
        for name in ("value", "step", "time"):
            f[f"fields/density/{name}"].resize(3, axis=0)
    resumed = solve(rho0, store=path, **kwargs)
    np.testing.assert_array_equal(resumed.rho, plain.rho)
    np.testing.assert_array_equal(resumed.steps, plain.steps)
    loaded = load_solution(path)
    np.testing.assert_array_equal(loaded.rho, plain.rho)
    assert loaded.beta == 5.0 and loaded.dynamics == "SA"
    with pytest.raises(ValueError, match="other parameters: beta is 5.0 there, 6.0 here"):
        solve(rho0, store=path, **{**kwargs, "beta": 6.0})


def test_bad_arguments():
    rho0 = cell_averages(32)
    with pytest.raises(ValueError, match="dynamics must be one of"):
        solve(rho0, beta=1.0, t_max=1.0, dynamics="sa")
    with pytest.raises(ValueError, match="t_max must be >= 0"):
        solve(rho0, beta=1.0, t_max=-1.0)
    with pytest.raises(ValueError, match="cfl must be <= 0.5"):
        solve(rho0, beta=1.0, t_max=1.0, cfl=0.9)
    with pytest.raises(ValueError, match="ts must be increasing times in"):
        solve(rho0, beta=1.0, t_max=1.0, ts=[0.5, 2.0])
