"""The pairwise observables computed by blocks and kernels, against the full-array NumPy formulas in float64."""

import numpy as np
import pytest

import particles
from particles import observables
from particles.io import LazyFrames


def _gram(x):
    x = np.asarray(x, dtype=np.float64)
    return x @ np.swapaxes(x, -1, -2)


def _energy_reference(x, beta):
    return np.exp(beta * _gram(x)).sum(axis=(-2, -1)) / (2 * beta * x.shape[-2] ** 2)


def _shifted_reference(x, beta):
    g = _gram(x)
    terms = np.expm1(beta * g) / beta if beta > 0 else g
    return terms.sum(axis=(-2, -1)) / (2 * x.shape[-2] ** 2)


def _normalized_reference(x, beta):
    return np.exp(beta * (_gram(x) - 1.0)).sum(axis=(-2, -1)) / x.shape[-2] ** 2


def _states(rng, shape):
    x = rng.standard_normal(shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# n = 1 (diagonal only), odd n, d = 2 (circle), 3, 5 (padding-free generic d), leading axes of 0 to 2.
@pytest.mark.parametrize("shape", [(1, 2), (7, 3), (3, 4, 2), (2, 3, 5, 5), (6, 1, 3)])
@pytest.mark.parametrize("beta", [0.3, 4.0, 40.0])
def test_energies_match_the_full_array_formulas(rng, shape, beta):
    x = _states(rng, shape)
    # rtol: the kernel sums each row in its own order (upper triangle twice); float64 rounding only.
    np.testing.assert_allclose(particles.energy(x, beta), _energy_reference(x, beta), rtol=1e-13, atol=0)
    np.testing.assert_allclose(particles.normalized_energy(x, beta), _normalized_reference(x, beta), rtol=1e-13)
    np.testing.assert_allclose(particles.energy(x, beta, shifted=True), _shifted_reference(x, beta), rtol=1e-12)
    assert particles.energy(x, beta).shape == shape[:-2]


def test_shifted_energy_at_zero_and_tiny_beta_keeps_relative_accuracy(rng):
    x = _states(rng, (4, 9, 3))
    limit = np.linalg.norm(x.sum(axis=-2), axis=-1) ** 2 / (2 * 81)
    np.testing.assert_allclose(particles.energy(x, 0.0, shifted=True), limit, rtol=1e-13)
    # expm1(b g)/b = g + b g^2/2 + ...: within b of the limit, relative.
    np.testing.assert_allclose(particles.energy(x, 1e-10, shifted=True), limit, rtol=1e-8)


def test_float32_states_are_summed_in_float64(rng):
    x = _states(rng, (5, 16, 2)).astype(np.float32)
    got = particles.normalized_energy(x, 7.0)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, _normalized_reference(x.astype(np.float64), 7.0), rtol=1e-13)


def test_blocks_do_not_change_a_bit(rng, monkeypatch):
    # Strided input (a system of a trajectory) and blocks of 1, 2 or 3 configurations give the
    # numbers of one block: each configuration is summed alone, in a fixed order.
    xs = _states(rng, (5, 3, 6, 3))
    whole = particles.energy(xs, 2.5), particles.clustering_density(xs, 0.5), particles.count_clusters(xs, 0.5)
    labels = particles.cluster_labels(xs, 0.5)[0]
    span, (sigma, eigenvalues) = particles.span_dimension(xs), particles.token_covariance(xs)
    for block_bytes in (1, 8 * 18 * 2, 8 * 18 * 3 + 5):
        monkeypatch.setattr(observables, "BLOCK_BYTES", block_bytes)
        assert np.array_equal(particles.energy(xs, 2.5), whole[0])
        assert np.array_equal(particles.clustering_density(xs, 0.5), whole[1])
        assert np.array_equal(particles.count_clusters(xs, 0.5), whole[2])
        assert np.array_equal(particles.cluster_labels(xs, 0.5)[0], labels)
        assert np.array_equal(particles.span_dimension(xs), span)
        assert np.array_equal(particles.token_covariance(xs)[0], sigma)
        assert np.array_equal(particles.token_covariance(xs)[1], eigenvalues)
        system = xs[:, 1]  # not contiguous
        assert np.array_equal(particles.energy(system, 2.5), whole[0][:, 1])
        every_other = xs[:, ::2]  # no flat view: read in blocks along the first axis
        assert np.array_equal(particles.energy(every_other, 2.5), whole[0][:, ::2])
        assert np.array_equal(particles.count_clusters(every_other, 0.5), whole[2][:, ::2])


def test_stored_frames_are_read_block_by_block(tmp_path, rng, monkeypatch):
    x0 = particles.sample_sphere(6, 3, batch=4, seed=1)
    traj = particles.simulate(x0, beta=2.0, t_max=0.5, dt=0.1, store=tmp_path / "run.h5")
    stored = particles.load(tmp_path / "run.h5")
    assert isinstance(stored.xs, LazyFrames)
    monkeypatch.setattr(observables, "BLOCK_BYTES", 8 * 18 * 4 * 2)  # two frames per read
    np.testing.assert_array_equal(particles.energy(stored.xs, 2.0), particles.energy(traj.xs, 2.0))
    np.testing.assert_array_equal(particles.count_clusters(stored.xs), particles.count_clusters(traj.xs))


def test_non_finite_states_give_nan(rng):
    x = _states(rng, (3, 5, 2))
    x[1, 2, 0] = np.nan
    got = particles.energy(x, 1.0)
    assert np.isnan(got[1]) and np.isfinite(got[[0, 2]]).all()
    assert np.isnan(particles.energy(x, 1.0, shifted=True)[1])
