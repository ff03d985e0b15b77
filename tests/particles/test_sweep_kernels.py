"""The fused sweep kernel against the stepwise kernels it fuses: the same states and the
same statistics at every checkpoint, bit for bit, whatever the number of workers."""

import numba
import numpy as np
import pytest

from particles import sample_sphere
from particles._kernels import euler_symmetric
from particles._observable_kernels import pair_statistics, scratch
from particles._sweep_kernels import euler_statistics_symmetric

DENSITY, LINK = 0.999, 1.0 - 1e-4


def _stepwise(x, BA, V, shift, usa, h, stretches):
    """Euler steps launch by launch, the statistics of the whole batch at each checkpoint."""
    B, _, n = x.shape
    close, clusters = np.zeros((2, len(stretches), B), np.int64)
    rows, stacks = scratch(B, n)
    labels = np.empty((B, n), np.int64)
    work = np.empty((numba.config.NUMBA_NUM_THREADS, 12, 2 * n))
    completed = np.empty(B, np.int64)
    for c, steps in enumerate(stretches):
        euler_symmetric(x, BA, V, shift, usa, h, steps, work, completed)
        assert np.all(completed == steps)
        pair_statistics(x, DENSITY, LINK, rows, stacks, close[c], labels, clusters[c])
    return close, clusters


def _fused(x, BA, V, shift, usa, h, stretches, workers):
    B, _, n = x.shape
    close, clusters = np.full((2, len(stretches), B), -1, np.int64)
    completed = np.full(B, -1, np.int64)
    before = numba.get_num_threads()
    numba.set_num_threads(min(workers, numba.config.NUMBA_NUM_THREADS))
    try:
        euler_statistics_symmetric(
            x,
            BA,
            V,
            shift,
            usa,
            h,
            stretches,
            DENSITY,
            LINK,
            np.empty((workers, 12, 2 * n)),
            np.empty((workers, 4 * n)),
            np.empty((workers, n), np.int64),
            np.empty((workers, n), np.int64),
            np.zeros(1, np.int64),
            close,
            clusters,
            completed,
        )
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(completed, stretches.sum())
    return close, clusters


# n = 8 takes the bit-mask statistics, n = 70 the depth-first search; USA has no shift.
# Checkpoints with no step between them (stretch 0) repeat the statistics of the state.
@pytest.mark.parametrize("n, usa", [(8, False), (70, False), (12, True)])
def test_fused_is_the_stepwise_path_bit_for_bit(n, usa):
    B, beta, h = 24, 6.0, 0.1
    x0 = np.ascontiguousarray(np.swapaxes(sample_sphere(n, 2, batch=B, seed=n), 1, 2))
    rng = np.random.default_rng(n)
    G = rng.standard_normal((B, 2, 2))
    BA = beta * (G + np.swapaxes(G, 1, 2)) / 2
    V = np.broadcast_to(np.eye(2), (1, 2, 2)).copy()
    shift = np.zeros(B) if usa else beta * np.abs(np.linalg.eigvalsh(BA / beta)).max(axis=1)
    stretches = np.array([0, 3, 0, 5, 1, 12], np.int64)
    x_step = x0.copy()
    expected = _stepwise(x_step, BA, V, shift, usa, h, stretches)
    for workers in (1, 2, 5):
        x = x0.copy()
        got = _fused(x, BA, V, shift, usa, h, stretches, workers)
        np.testing.assert_array_equal(x, x_step)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    # The statistics move: the test would see them taken at the wrong checkpoint.
    assert len(np.unique(expected[0].sum(axis=1))) > 2 or len(np.unique(expected[1].sum(axis=1))) > 2


def test_a_non_finite_system_stops_and_reports_its_steps():
    # USA at beta = 800: the weights e^{800 <x_i, x_j>} overflow at the first step.
    n, B = 6, 3
    x = np.ascontiguousarray(np.swapaxes(sample_sphere(n, 2, batch=B, seed=1), 1, 2))
    BA = np.broadcast_to(800.0 * np.eye(2), (1, 2, 2)).copy()
    completed = np.full(B, -1, np.int64)
    close, clusters = np.full((2, 2, B), -7, np.int64)
    euler_statistics_symmetric(
        x, BA, np.eye(2)[None], np.zeros(B), True, 0.1, np.array([0, 4]), DENSITY, LINK,
        np.empty((2, 12, 2 * n)), np.empty((2, 4 * n)), np.empty((2, n), np.int64), np.empty((2, n), np.int64),
        np.zeros(1, np.int64), close, clusters, completed,
    )  # fmt: skip
    np.testing.assert_array_equal(completed, 0)
    # Checkpoint 0 (no step) has its statistics; the one after the overflow is left alone.
    assert np.all(close[0] >= 0) and np.all(close[1] == -7)
