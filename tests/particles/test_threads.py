"""threads=: the default follows the cores the process may use; bad values are refused."""

import numba
import pytest

from particles import _threads, phase_diagram, sample_sphere, simulate


def test_default_follows_the_affinity_and_the_pool(monkeypatch):
    monkeypatch.setattr(_threads.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert _threads.check_threads(None) == 1
    monkeypatch.setattr(_threads.os, "sched_getaffinity", lambda pid: set(range(512)), raising=False)
    assert _threads.check_threads(None) == numba.config.NUMBA_NUM_THREADS


def test_limit_sets_and_restores_the_numba_threads():
    before = numba.get_num_threads()
    with _threads.thread_limit(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before


@pytest.mark.parametrize(
    "threads, error, match",
    [
        (0, ValueError, "threads must be >= 1, got 0"),
        (numba.config.NUMBA_NUM_THREADS + 1, ValueError, "NUMBA_NUM_THREADS"),
        (1.5, TypeError, "threads must be an integer, got float"),
        (True, TypeError, "threads must be an integer"),
    ],
)
def test_bad_threads(threads, error, match):
    with pytest.raises(error, match=match):
        simulate(sample_sphere(4, 2, seed=0), beta=1.0, t_max=0.1, dt=0.1, threads=threads)
    with pytest.raises(error, match=match):
        phase_diagram([1.0], n=4, batch=2, t_max=0.2, checkpoints=2, threads=threads)
