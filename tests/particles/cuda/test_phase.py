"""phase_diagram(..., device="cuda") against the CPU: the same draws and Euler scheme, the
clustering statistics computed on the device (counts equal, densities to 1e-12)."""

import numpy as np
import pytest
from numba import cuda

import particles
from particles import ClusteringEnsemble, beta_statistics, clustering_density, count_clusters
from particles.cuda import _phase

from .gpu import needs_cuda

pytestmark = [needs_cuda, pytest.mark.filterwarnings("ignore::particles.StepSizeWarning")]
# Loose thresholds so that tiny short runs already hold clusters of several tokens.
TINY = dict(n=5, d=2, batch=3, t_max=1.2, dt=0.2, checkpoints=4, density_threshold=0.9, cluster_tol=0.2)


def _assert_same(gpu, cpu):
    np.testing.assert_allclose(gpu.density, cpu.density, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(gpu.clusters, cpu.clusters)
    np.testing.assert_allclose(gpu.final_density, cpu.final_density, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "betas, settings",
    [
        ([0.5, 4.0], dict(TINY)),
        # USA with the authors' step correction: one step size per beta within one launch.
        (
            [0.5, 1.5],
            dict(TINY, d=3, dynamics="USA", interaction="gaussian", value="gaussian", usa_step_correction=True),
        ),
        # Redraws every 0.4: several launches per beta, statistics carried across them.
        ([0.5, 4.0], dict(TINY, d=3, interaction="goe", value="minus_qk", regen_period=0.4, draw="run")),
    ],
    ids=["SA-identity", "USA-gaussian-corrected", "goe-redrawn"],
)
def test_phase_diagram_matches_cpu(betas, settings):
    gpu = particles.phase_diagram(betas, device="cuda", **settings)
    cpu = particles.phase_diagram(betas, **settings)
    _assert_same(gpu, cpu)
    # The case must exercise the statistics: clusters merge and close pairs appear.
    assert cpu.clusters.min() < settings["n"] and cpu.density.max() > 0


def test_beta_statistics_on_the_gpu_is_its_row():
    ensemble = ClusteringEnsemble(**TINY)
    gpu, cpu = beta_statistics(4.0, ensemble, device="cuda"), beta_statistics(4.0, ensemble)
    for key in cpu:
        np.testing.assert_allclose(gpu[key], cpu[key], rtol=0, atol=1e-12)


def test_device_statistics_are_the_observables(rng):
    """The kernel's counts at step 0 on clustered states (odd batch: the median is one
    system's count) against the library's observables."""
    batch, n, d = 5, 7, 3
    centres = rng.standard_normal((batch, 3, d))
    x = centres[:, rng.integers(0, 3, n)] + 0.05 * rng.standard_normal((batch, n, d))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    close = cuda.to_device(np.zeros((1, 1), np.int64))
    clusters = cuda.to_device(np.zeros((1, 1, n + 1), np.int64))
    final_close = cuda.to_device(np.zeros(batch, np.int64))
    failed = cuda.to_device(np.full(batch, -1, np.int64))
    eye = np.eye(d)[None]
    threads, shared = _phase._small.launch_shape(n, d, np.float64, "euler")
    _phase.kernel(np.dtype(np.float64))[batch, threads, 0, shared](
        cuda.to_device(x), eye, eye, False, np.ones(1), batch, np.zeros((1, 1), np.int64), 0, 0, True,
        0.99, 0.95, close, clusters, final_close, failed,
    )  # fmt: skip
    counts = count_clusters(x, tol=0.05)
    assert 1 < np.median(counts) < n
    pairs = n * (n - 1)
    density = clustering_density(x, threshold=0.99)
    np.testing.assert_array_equal(final_close.copy_to_host() / pairs, density)
    np.testing.assert_array_equal(close.copy_to_host()[0, 0], round(density.sum() * pairs))
    np.testing.assert_array_equal(clusters.copy_to_host()[0, 0], np.bincount(counts, minlength=n + 1))


@pytest.mark.parametrize("size", [1, 2, 5, 6])
def test_median_of_counts_is_numpys_median(rng, size):
    values = rng.integers(0, 6, (3, size))
    histograms = np.stack([np.bincount(v, minlength=7) for v in values])
    np.testing.assert_array_equal(_phase.median_of_counts(histograms), np.median(values, axis=1))


def test_non_finite_state_names_beta():
    with pytest.raises(RuntimeError, match=r"non-finite at t = 0.1 \(step 1\) with beta = 800.*USA"):
        particles.phase_diagram([800.0], device="cuda", **dict(TINY, dynamics="USA", dt=0.1))


def test_too_large_a_system_is_refused():
    with pytest.raises(ValueError, match=r"device='cuda' phase diagrams .* n = 2000, d = 2; use device='cpu'"):
        particles.phase_diagram([1.0], device="cuda", n=2000, d=2, batch=1, t_max=0.1, checkpoints=2)
