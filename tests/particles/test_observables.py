"""Observables against plain NumPy/SciPy references and exact configurations."""

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage

from particles import (
    cluster_labels,
    clustering_density,
    count_clusters,
    energy,
    normalized_energy,
    sample_sphere,
    span_dimension,
    token_covariance,
)


def _naive_density(x, threshold):
    g = x @ x.T
    n = len(x)
    return ((g > threshold).sum() - (np.diag(g) > threshold).sum()) / (n * (n - 1))


def _scipy_clusters(x, tol):
    # Single linkage on the "distance" 1 - <x_i, x_j>: merged when below tol.
    g = x @ x.T
    dist = (1 - g)[np.triu_indices(len(x), 1)]
    return fcluster(linkage(np.maximum(dist, 0), "single"), t=tol, criterion="distance")


def _clustered(rng, n_clusters, per_cluster, d, spread):
    centres = sample_sphere(n_clusters, d, seed=int(rng.integers(1 << 30)))
    x = np.repeat(centres, per_cluster, axis=0) + spread * rng.standard_normal((n_clusters * per_cluster, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# d = 2 with n <= 63 takes the kernels' offset walk with bit-mask links, d = 3 and n = 64 the
# depth-first search over Gram rows; n = 1, 2, 3, 33 and 63 test the edges.
@pytest.mark.parametrize(
    "d, n_clusters, per_cluster",
    [(3, 4, 8), (2, 4, 8), (2, 1, 33), (2, 3, 1), (2, 1, 2), (2, 7, 3), (2, 7, 9), (2, 8, 8)],
)
def test_density_matches_numpy(rng, d, n_clusters, per_cluster):
    x = np.stack(
        [
            _clustered(rng, n_clusters, per_cluster, d, spread)
            for spread in (0.0, 1e-9, 0.005, 0.02, 0.05)
            for _ in range(4)
        ]
    )
    for threshold in (0.999, 0.99, 0.5, -0.5):
        got = clustering_density(x, threshold=threshold)
        want = [_naive_density(s, threshold) for s in x]
        np.testing.assert_allclose(got, want, rtol=0, atol=0)


def test_density_is_strictly_between_zero_and_one_for_clusters(rng):
    got = clustering_density(np.stack([_clustered(rng, 4, 8, 3, 0.02) for _ in range(5)]))
    assert 0 < got.min() and got.max() < 1


def test_single_token_is_one_cluster():
    assert count_clusters(np.array([[0.6, 0.8]])) == 1


@pytest.mark.parametrize("d, n_clusters, per_cluster", [(2, 5, 6), (3, 5, 6), (2, 2, 1), (2, 9, 7), (2, 8, 8)])
@pytest.mark.parametrize("spread", [0.005, 0.02, 0.05])
def test_clusters_match_scipy_single_linkage(rng, spread, d, n_clusters, per_cluster):
    # As above, (2, 9, 7) has the most tokens of the bit-mask links and (2, 8, 8) one more.
    for _ in range(10):
        x = _clustered(rng, n_clusters, per_cluster, d, spread)
        labels, sizes = cluster_labels(x, tol=1e-3)
        ref = _scipy_clusters(x, 1e-3)
        # Same partition: a bijection between label sets.
        pairs = set(zip(labels, ref))
        assert len(pairs) == len(set(labels)) == len(set(ref))
        assert sizes.sum() == len(x) and len(sizes) == labels.max() + 1
        assert labels[0] == 0 and np.all(np.diff(np.maximum.accumulate(labels)) <= 1)


def test_chain_is_one_cluster_where_the_rank_count_says_three():
    # a ~ b ~ c but a !~ c: one single-linkage cluster. The authors' count, the rank of the
    # 0/1 matrix [<x_i, x_j> > 1 - tol], gives 3 (that matrix has determinant -1).
    theta = np.array([0.0, 0.03, 0.06])
    x = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    tol = 1 - np.cos(0.045)
    assert count_clusters(x, tol=tol) == 1
    assert np.linalg.matrix_rank((x @ x.T > 1 - tol).astype(float)) == 3


def test_counts_on_exact_configurations():
    antipodal = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert count_clusters(antipodal) == 2
    assert count_clusters(np.tile([0.0, 1.0], (5, 1))) == 1
    assert clustering_density(np.tile([0.0, 1.0], (5, 1))) == 1.0
    equispaced = np.stack([np.cos(2 * np.pi * np.arange(6) / 6), np.sin(2 * np.pi * np.arange(6) / 6)], 1)
    assert count_clusters(equispaced) == 6 and clustering_density(equispaced) == 0.0


def test_batched_shapes(rng):
    x = sample_sphere(7, 3, batch=12, seed=0).reshape(3, 4, 7, 3)
    assert count_clusters(x).shape == (3, 4)
    assert clustering_density(x).shape == (3, 4)
    assert energy(x, 1.0).shape == (3, 4)
    assert span_dimension(x).shape == (3, 4)


def test_energy_formula_and_small_beta_limit(rng):
    x = sample_sphere(6, 3, seed=1)
    g = x @ x.T
    beta = 1.7
    np.testing.assert_allclose(energy(x, beta), np.exp(beta * g).sum() / (2 * beta * 36), rtol=1e-14)
    np.testing.assert_allclose(energy(x, beta, shifted=True), energy(x, beta) - 1 / (2 * beta), rtol=1e-12)
    # beta -> 0: E - 1/(2 beta) -> |sum x_i|^2 / (2 n^2) (theory note, section 1).
    limit = np.sum(x.sum(0) ** 2) / (2 * 36)
    np.testing.assert_allclose(energy(x, 0.0, shifted=True), limit, rtol=1e-14)
    np.testing.assert_allclose(energy(x, 1e-8, shifted=True), limit, rtol=1e-7)
    with pytest.raises(ValueError, match="shifted=True"):
        energy(x, 0.0)


def test_normalized_energy_is_one_for_a_single_cluster():
    x = np.tile([0.6, 0.8], (4, 1))
    np.testing.assert_allclose(normalized_energy(x, 3.0), 1.0, rtol=1e-15)
    assert normalized_energy(sample_sphere(8, 2, seed=0), 3.0) < 1.0


def test_span_dimension_and_covariance():
    x = sample_sphere(10, 4, seed=2)
    assert span_dimension(x) == 4
    assert span_dimension(np.tile([1.0, 0.0, 0.0], (5, 1))) == 1
    sigma, eig = token_covariance(x)
    np.testing.assert_allclose(sigma, x.T @ x / 10, rtol=1e-14)
    np.testing.assert_allclose(eig.sum(), 1.0, rtol=1e-14)  # trace of Sigma = mean |x_i|^2
    assert np.all(np.diff(eig) <= 0)


@pytest.mark.parametrize("fn", [clustering_density, count_clusters, span_dimension])
def test_bad_input(fn):
    with pytest.raises(ValueError, match="shape"):
        fn(np.ones(3))
    with pytest.raises(TypeError, match="dtype"):
        fn(np.ones((3, 2), dtype=int))
