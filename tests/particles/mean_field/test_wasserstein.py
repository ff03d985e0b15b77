"""particles.mean_field.wasserstein: W1 and W2 on the circle against brute-force optimal
transport and against POT's circle routines; densities against fine atoms; sliced and exact
W2 on the sphere against POT."""

import numpy as np
import ot
import pytest

from particles import sample_sphere
from particles.mean_field import (
    great_circle_projections,
    grid,
    normalise,
    sliced_wasserstein_sphere,
    wasserstein_circle,
    wasserstein_sphere,
)


def brute_force(a, b, p):
    """The transport linear program with the geodesic cost of the circle (exact)."""
    d = np.abs(a[:, None] - b[None, :]) % (2 * np.pi)
    d = np.minimum(d, 2 * np.pi - d)
    return ot.emd2(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), d**p) ** (1 / p)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("seed", range(4))
def test_small_cases_equal_brute_force(p, seed):
    rng = np.random.default_rng(seed)
    n, m = rng.integers(1, 9, size=2)
    a = rng.uniform(-10, 10, n)
    b = rng.vonmises(2.0, 1.5, m)
    if seed == 0:
        a[:2] = b[0]  # shared and repeated atoms
    assert wasserstein_circle(a, b, p=p) == pytest.approx(brute_force(a, b, p), rel=1e-12, abs=1e-13)


@pytest.mark.parametrize("p", [1, 2])
def test_larger_cases_equal_pot(p, rng):
    a = rng.vonmises(0.0, 3.0, 300) % (2 * np.pi)
    b = rng.uniform(0, 2 * np.pi, 200)
    ours = wasserstein_circle(a, b, p=p) / (2 * np.pi)
    # POT works on [0, 1) and returns W_p^p.
    pot = ot.wasserstein_circle(a / (2 * np.pi), b / (2 * np.pi), p=p, eps=1e-12)[0] ** (1 / p)
    assert ours == pytest.approx(pot, rel=1e-8)
    if p == 2:
        search = ot.binary_search_circle(a / (2 * np.pi), b / (2 * np.pi), p=2, eps=1e-12)[0] ** 0.5
        assert ours == pytest.approx(search, rel=1e-8)


@pytest.mark.parametrize("p", [1, 2])
def test_density_is_the_limit_of_fine_atoms(p):
    M, fine = 16, 64
    theta = grid(M)
    rho = normalise(np.exp(np.cos(theta - 0.5)) + 0.2)
    # The piecewise-constant density as M * fine atoms, each carrying its share of a cell.
    offsets = (np.arange(fine) + 0.5) / fine - 0.5
    atoms = (theta[:, None] + 2 * np.pi / M * offsets).ravel()
    weights = np.repeat(rho / rho.sum() / fine, fine)
    other = np.array([0.3, 2.0, 4.5, 4.6])
    d = np.abs(atoms[:, None] - other[None, :]) % (2 * np.pi)
    d = np.minimum(d, 2 * np.pi - d)
    exact_atoms = ot.emd2(weights, np.full(4, 0.25), d**p) ** (1 / p)
    assert wasserstein_circle((theta, rho), other, p=p) == pytest.approx(exact_atoms, abs=2 * np.pi / (M * fine))


def test_distances_between_densities():
    M = 32
    theta = grid(M)
    # Supported on a third of the circle: rotated by 8 pi / M, every W_p is that angle (with
    # mass everywhere, part of it could go round the other way for less).
    rho = normalise(np.maximum(np.cos(theta) - 0.5, 0.0))
    shifted = np.roll(rho, 4)
    for p in (1, 2):
        assert wasserstein_circle((theta, rho), (theta, shifted), p=p) == pytest.approx(8 * np.pi / M, rel=1e-12)
        assert wasserstein_circle((theta, rho), (theta, rho), p=p) == pytest.approx(0.0, abs=1e-7)


def test_sliced_on_the_sphere_equals_pot_with_the_same_planes():
    x = sample_sphere(40, 4, seed=1)
    y = sample_sphere(30, 4, seed=2)
    planes = great_circle_projections(4, 25, seed=3)
    ours = sliced_wasserstein_sphere(x, y, planes=planes)
    pot = ot.sliced_wasserstein_sphere(x, y, n_projections=25, projections=planes, p=2)
    assert ours / (2 * np.pi) == pytest.approx(pot, rel=1e-6)


def test_exact_sphere_distance_bounds_the_sliced_one():
    x = sample_sphere(20, 3, seed=4)
    y = sample_sphere(20, 3, seed=5)
    exact = wasserstein_sphere(x, y, p=2)
    assert 0 < sliced_wasserstein_sphere(x, y, projections=50) <= exact + 1e-12
    assert wasserstein_sphere(x, x, p=1) == pytest.approx(0.0, abs=1e-7)


def test_bad_measures():
    theta = grid(16)
    rho = np.full(16, 1 / (2 * np.pi))
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        wasserstein_circle(theta, theta, p=3)
    with pytest.raises(ValueError, match=r"a\[0\] must be the uniform grid"):
        wasserstein_circle((grid(17)[:16], rho), theta)
    with pytest.raises(ValueError, match=r"b\[1\] must have unit mass"):
        wasserstein_circle(theta, (theta, 2 * rho))
    with pytest.raises(ValueError, match="a must be a 1-D array of n >= 1 angles"):
        wasserstein_circle(np.zeros((2, 2)), theta)
    with pytest.raises(ValueError, match="b must be finite"):
        wasserstein_circle(theta, np.array([np.inf]))
    with pytest.raises(ValueError, match="same sphere"):
        sliced_wasserstein_sphere(sample_sphere(4, 3), sample_sphere(4, 4))
