"""device=: its guards, and a clear error where no CUDA device is present (this process has
no simulator; see test_simulator.py for the runs on the GPU path)."""

import numpy as np
import pytest

import particles
from particles.cuda import resolve_device

from .gpu import REASON

no_gpu = pytest.mark.skipif(REASON is None, reason="a CUDA device is present")


def test_cpu_is_cpu():
    assert resolve_device("cpu") == "cpu"


@pytest.mark.parametrize("device", ["gpu", "CUDA", ""])
def test_unknown_device_is_a_value_error(device):
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device(device)


def test_device_must_be_a_string():
    with pytest.raises(TypeError, match="device must be one of"):
        resolve_device(0)


@no_gpu
def test_cuda_without_a_gpu_names_the_device():
    x0 = particles.sample_sphere(4, 2, seed=0)
    with pytest.raises(RuntimeError, match=r"device='cuda' needs a CUDA GPU.*device='cpu'"):
        particles.simulate(x0, beta=1.0, t_max=0.1, dt=0.1, device="cuda")
    with pytest.raises(RuntimeError, match=r"device='cuda' needs a CUDA GPU"):
        particles.phase_diagram([1.0], n=4, batch=2, t_max=0.2, checkpoints=2, device="cuda")


@no_gpu
def test_auto_without_a_gpu_runs_on_the_cpu():
    assert resolve_device("auto") == "cpu"
    x0 = particles.sample_sphere(4, 2, batch=2, seed=0)
    auto = particles.simulate(x0, beta=1.0, t_max=0.3, dt=0.1, device="auto")
    np.testing.assert_array_equal(auto.xs, particles.simulate(x0, beta=1.0, t_max=0.3, dt=0.1).xs)
