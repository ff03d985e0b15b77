import numpy as np
import pytest
import torch


@pytest.fixture
def rng():
    return np.random.default_rng(20231218)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread in every test: the tensors are tiny, and on shared cores a second
    thread only waits at each operation's barrier (measured up to 100x slower under load).
    Speed only: no result depends on it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
