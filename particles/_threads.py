"""The number of threads a run uses: by default the cores this process may run on."""

import contextlib
import os

import numba
import torch

from .checks import check_int


def available_threads():
    """The cores this process may run on (its CPU affinity, where the OS reports one),
    capped by Numba's thread pool (``NUMBA_NUM_THREADS``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        cores = os.cpu_count() or 1
    return max(1, min(cores, numba.config.NUMBA_NUM_THREADS))


def check_threads(threads):
    """``threads`` as an int in [1, NUMBA_NUM_THREADS]; None gives ``available_threads()``."""
    if threads is None:
        return available_threads()
    threads = check_int("threads", threads, low=1)
    pool = numba.config.NUMBA_NUM_THREADS
    if threads > pool:
        raise ValueError(
            f"threads must be at most {pool}, the size of Numba's thread pool (NUMBA_NUM_THREADS, "
            f"fixed when Numba starts), got {threads}; set NUMBA_NUM_THREADS before importing particles for more"
        )
    return threads


@contextlib.contextmanager
def thread_limit(threads, torch_threads=None):
    """Run the block on ``threads`` Numba threads, and on ``torch_threads`` torch threads
    where that is given; then restore the previous counts.

    torch keeps its own setting unless asked: callers (the tests, for one) keep it at one
    thread where its tensors are tiny.
    """
    numba_before, torch_before = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(threads)
    torch.set_num_threads(torch_before if torch_threads is None else torch_threads)
    try:
        yield threads
    finally:
        numba.set_num_threads(numba_before)
        torch.set_num_threads(torch_before)
