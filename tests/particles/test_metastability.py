import numpy as np
import pytest

from particles import count_clusters, sample_sphere, simulate
from particles.metastability import find_plateaus, log_time_grid, staircase


def test_find_plateaus_on_a_known_staircase():
    ts = log_time_grid(0.1, 1000.0, 10)
    counts = np.where(ts < 1.0, 8, np.where(ts < 100.0, 3, 1))
    plateaus = find_plateaus(ts, counts)
    assert [p.clusters for p in plateaus] == [8, 3, 1]
    assert plateaus[1].start == pytest.approx(1.0) and plateaus[1].end < 100.0
    np.testing.assert_allclose(plateaus[1].log_length, np.log(plateaus[1].end / plateaus[1].start))
    # A blip shorter than a doubling is not a plateau.
    counts[15] = 5
    assert 5 not in [p.clusters for p in find_plateaus(ts, counts)]


def test_staircase_matches_a_plain_run():
    x0 = sample_sphere(10, 2, batch=3, seed=0)
    ts = np.array([0.1, 0.5, 1.0, 2.0])
    steps = []
    counts = staircase(x0, 4.0, ts, dt=0.1, on_steps=steps.append)
    assert steps == [1, 4, 5, 10]  # each stretch once: a progress bar in steps reaches t_max / dt = 20
    traj = simulate(x0, beta=4.0, t_max=2.0, dt=0.1)
    want = count_clusters(traj.xs[[1, 5, 10, 20]], tol=1e-3)
    np.testing.assert_array_equal(counts, want)


def test_bad_input():
    with pytest.raises(ValueError, match="strictly increasing"):
        find_plateaus([1.0, 1.0], [2, 2])
    with pytest.raises(ValueError, match="equal length"):
        find_plateaus([1.0, 2.0], [2])
    with pytest.raises(ValueError, match="t_max"):
        log_time_grid(1.0, 0.5)
