"""simulate(..., device="cuda") against the CPU solver: the same scheme, float64 to 1e-12,
through the one-block-per-system kernels (``_small``) and the tiled ones (``_tiled``, forced
with small tiles so that tiny systems cross tile edges)."""

import warnings

import numpy as np
import pytest

import particles
from particles import cuda
from particles._simulate import _interaction
from particles.cuda import resolve_device

from ... import naive
from .gpu import needs_cuda

pytestmark = [needs_cuda, pytest.mark.filterwarnings("ignore::particles.StepSizeWarning")]
# t_max is not a multiple of dt: the last step is shortened, as on the CPU.
RUN = dict(beta=1.0, t_max=0.175, dt=0.05, save_every=2)


@pytest.fixture
def system(rng):
    """Batched start with Q, K shared and one V per system (scaled so that dt = 0.05 stays
    stable for USA too)."""
    x0 = particles.sample_sphere(5, 3, batch=2, seed=1)
    Q, K = rng.standard_normal((3, 3)) / 2, rng.standard_normal((3, 3)) / 2
    return x0, dict(Q=Q, K=K, V=rng.standard_normal((2, 3, 3)))


def _tiled_run(x0, tile, **kw):
    """The frames of simulate's run, through the tiled kernels with tiles of ``tile``."""
    params = particles.simulate(x0, **kw).params
    fail = lambda t, step: pytest.fail(f"non-finite at t = {t}, step {step}")  # noqa: E731
    return np.stack([x for _, x in cuda.run(x0, _interaction(params), params.V, params, on_failure=fail, tile=tile)])


@pytest.mark.parametrize("dynamics", ["SA", "USA"])
@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_small_kernel_matches_cpu(system, method, dynamics):
    x0, matrices = system
    kw = dict(RUN, method=method, dynamics=dynamics, **matrices)
    gpu = particles.simulate(x0, device="cuda", **kw)
    cpu = particles.simulate(x0, **kw)
    np.testing.assert_array_equal(gpu.ts, cpu.ts)
    np.testing.assert_allclose(gpu.xs, cpu.xs, rtol=0, atol=1e-12)
    assert gpu.params == cpu.params


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_tiled_kernels_match_cpu(system, method):
    # Two steps, the second shortened: the simulator runs each tile thread as a Python thread.
    x0, matrices = system
    kw = dict(beta=1.0, t_max=0.075, dt=0.05, method=method, **matrices)
    np.testing.assert_allclose(_tiled_run(x0, 4, **kw), particles.simulate(x0, **kw).xs, rtol=0, atol=1e-12)


def test_tiled_usa_and_uneven_tiles(rng):
    # n = 7, d = 5: neither is a multiple of the tile, so padded keys and coordinates are met.
    x0 = particles.sample_sphere(7, 5, seed=3)
    kw = dict(beta=0.7, t_max=0.1, dt=0.1, dynamics="USA", V=rng.standard_normal((5, 5)))
    np.testing.assert_allclose(_tiled_run(x0, 4, **kw), particles.simulate(x0, **kw).xs, rtol=0, atol=1e-12)


def test_one_euler_step_is_the_naive_scheme(rng):
    """Against the explicit double loop of tests/naive.py, not only the CPU solver."""
    x0 = particles.sample_sphere(4, 3, seed=2)
    Q, K, V = (rng.standard_normal((3, 3)) for _ in range(3))
    gpu = particles.simulate(x0, beta=2.0, t_max=0.1, dt=0.1, Q=Q, K=K, V=V, device="cuda")
    np.testing.assert_allclose(gpu.final, naive.euler(x0, 2.0, 0.1, 1, Q=Q, K=K, V=V), rtol=0, atol=1e-12)


@pytest.mark.parametrize("tile", [None, 4])
def test_running_maximum_keeps_large_logits_finite(tile):
    """SA at beta = 1000: e^{beta <x_i, x_j>} overflows unless each row is shifted; the
    online softmax must give the CPU's (shifted) velocities."""
    x0 = particles.sample_sphere(5, 3, batch=2, seed=4)
    kw = dict(beta=1000.0, t_max=0.001, dt=0.001)
    cpu = particles.simulate(x0, **kw).xs
    gpu = particles.simulate(x0, device="cuda", **kw).xs if tile is None else _tiled_run(x0, tile, **kw)
    np.testing.assert_allclose(gpu, cpu, rtol=0, atol=1e-12)


def test_single_system_and_default_matrices():
    x0 = particles.sample_sphere(6, 2, seed=5)
    gpu = particles.simulate(x0, beta=3.0, t_max=0.3, dt=0.1, device="cuda")
    assert gpu.xs.shape == (4, 6, 2)
    np.testing.assert_allclose(gpu.xs, particles.simulate(x0, beta=3.0, t_max=0.3, dt=0.1).xs, rtol=0, atol=1e-12)


def test_float32_follows_float32_cpu():
    x0 = particles.sample_sphere(5, 3, batch=2, seed=6).astype(np.float32)
    gpu = particles.simulate(x0, beta=2.0, t_max=0.3, dt=0.1, device="cuda")
    assert gpu.xs.dtype == np.float32
    np.testing.assert_allclose(gpu.xs, particles.simulate(x0, beta=2.0, t_max=0.3, dt=0.1).xs, rtol=0, atol=1e-5)


def test_stored_run_is_the_in_memory_run(tmp_path):
    x0 = particles.sample_sphere(5, 2, batch=2, seed=7)
    kw = dict(beta=2.0, t_max=0.3, dt=0.1, device="cuda")
    stored = particles.simulate(x0, store=tmp_path / "run.h5", **kw)
    np.testing.assert_array_equal(np.asarray(stored.xs[:]), particles.simulate(x0, **kw).xs)


def test_non_finite_state_raises_as_on_the_cpu():
    # USA weights e^{beta <x_i, x_j>} overflow at beta = 800 in float64.
    x0 = particles.sample_sphere(4, 2, seed=8)
    kw = dict(beta=800.0, t_max=0.3, dt=0.1, dynamics="USA")
    with pytest.raises(RuntimeError) as on_cpu:
        particles.simulate(x0, **kw)
    with pytest.raises(RuntimeError) as on_gpu:
        particles.simulate(x0, device="cuda", **kw)
    assert str(on_gpu.value) == str(on_cpu.value)


def test_dopri5_is_refused_naming_the_device():
    x0 = particles.sample_sphere(4, 2, seed=0)
    with pytest.raises(ValueError, match=r"device='cuda' runs method 'euler' or 'rk4', got method='dopri5'"):
        particles.simulate(x0, beta=1.0, t_max=0.1, dt=0.1, method="dopri5", device="cuda")


def test_auto_takes_the_gpu():
    assert resolve_device("auto") == "cuda"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x0 = particles.sample_sphere(4, 2, seed=0)
        auto = particles.simulate(x0, beta=1.0, t_max=0.2, dt=0.1, device="auto")
    np.testing.assert_array_equal(auto.xs, particles.simulate(x0, beta=1.0, t_max=0.2, dt=0.1, device="cuda").xs)
