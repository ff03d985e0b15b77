"""particles.mean_field.clusters: cluster counts of synthetic densities, coarsening and the
first merge time."""

import numpy as np
import pytest

from particles.mean_field import cluster_counts, coarsen, first_merge_time, grid, normalise


def bumps(M, centres, weights, width=0.05):
    theta = grid(M)
    rho = sum(w * np.exp((np.cos(theta - c) - 1) / width**2) for c, w in zip(centres, weights))
    return normalise(rho)


def test_counts_clusters_and_ignores_light_ones():
    M = 256
    rho = bumps(M, [0.0, 2.0, 4.0, 5.0], [0.4, 0.3, 0.28, 0.02])
    assert cluster_counts(rho, threshold=0.1, min_mass=0.05)[0] == 3
    assert cluster_counts(rho, threshold=0.1, min_mass=0.0)[0] == 4
    # A cluster across the angle 0 counts once.
    assert cluster_counts(np.roll(rho, M // 2 + 3), threshold=0.1)[0] == 3


def test_coarsen_keeps_mass_and_centres(rng):
    rho = normalise(rng.random(96))
    for bins in (96, 48, 32, 12):
        coarse = coarsen(rho, bins)
        assert coarse.sum() * 2 * np.pi / bins == pytest.approx(1.0, rel=1e-13)
    # A point mass in cell 0 of the fine grid stays in cell 0 of the coarse one.
    delta = np.zeros(96)
    delta[0] = 96 / (2 * np.pi)
    assert np.argmax(coarsen(delta, 12)) == 0 and np.argmax(coarsen(delta, 32)) == 0
    with pytest.raises(ValueError, match="bins must divide"):
        coarsen(rho, 7)


def test_first_merge_time():
    ts = np.arange(6.0)
    assert first_merge_time(ts, [1, 3, 3, 3, 2, 1]) == 4.0
    assert first_merge_time(ts, [1, 3, 2, 3, 2, 2]) == 4.0  # flicker while forming
    assert first_merge_time(ts, [1, 4, 3, 3, 2, 2], clusters=3) == 4.0
    assert np.isnan(first_merge_time(ts, [1, 2, 3, 3, 3, 3]))
