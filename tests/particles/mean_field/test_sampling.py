"""particles.mean_field.sampling: draws from a density converge to it in W1 at the rate
n^{-1/2}, and histograms return densities."""

import numpy as np
import pytest

from particles.mean_field import grid, histogram_density, normalise, sample_angles, wasserstein_circle
from particles.mean_field.sampling import angles_to_points, points_to_angles


def test_draws_converge_to_the_density_at_rate_one_half():
    theta = grid(64)
    rho = normalise(np.exp(1.5 * np.cos(theta)))
    ns = np.array([64, 256, 1024, 4096])
    mean_w1 = [
        np.mean([wasserstein_circle(a, (theta, rho)) for a in sample_angles(rho, n, seed=n, batch=8)]) for n in ns
    ]
    slope = np.polyfit(np.log(ns), np.log(mean_w1), 1)[0]
    assert -0.62 < slope < -0.38, (mean_w1, slope)


def test_draws_stay_in_the_support():
    rho = np.zeros(32)
    rho[[3, 20]] = 1.0
    rho = normalise(rho)
    angles = sample_angles(rho, 20000, seed=0)
    cells = np.round(angles * 32 / (2 * np.pi)).astype(int) % 32
    assert set(cells) == {3, 20}
    np.testing.assert_allclose(histogram_density(angles, 32), rho, atol=0.03 * rho.max())
    assert histogram_density(angles, 32).sum() * 2 * np.pi / 32 == pytest.approx(1.0, rel=1e-14)


def test_points_round_trip():
    angles = np.array([0.0, 1.0, 3.0, 6.0])
    np.testing.assert_allclose(points_to_angles(angles_to_points(angles)), angles, atol=1e-15)


def test_bad_sampling_arguments():
    with pytest.raises(ValueError, match="n must be >= 1"):
        sample_angles(np.full(16, 1 / (2 * np.pi)), 0)
