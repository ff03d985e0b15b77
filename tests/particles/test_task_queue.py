"""The atomic task queue: every task handed out once, the work shared among the workers."""

import numba
import numpy as np
import pytest

from particles._task_queue import claim_all


@pytest.mark.parametrize("threads", [1, 2])
def test_every_task_exactly_once(threads):
    threads = min(threads, numba.config.NUMBA_NUM_THREADS)
    taken = np.zeros(500, np.int64)
    owner = np.full(500, -1, np.int64)
    queue = np.zeros(1, np.int64)
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        claim_all(queue, threads, taken, owner, 2000)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(taken, 1)
    assert np.all((0 <= owner) & (owner < threads))
    # Each worker takes one task past the last on its way out.
    assert queue[0] == 500 + threads


def test_a_worker_with_nothing_left_finds_the_queue_empty():
    taken = np.zeros(3, np.int64)
    queue = np.array([3], np.int64)  # every task already handed out
    claim_all(queue, 1, taken, np.full(3, -1, np.int64), 0)
    np.testing.assert_array_equal(taken, 0)
