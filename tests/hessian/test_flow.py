"""Curvature along the particle flow (hessian.flow): the driver against autograd, the clustering theory of
hessian.md §2.12 along a run, and the HDF5 round trip."""

import dataclasses

import numpy as np
import pytest
import torch
from flow_reference import euler_run, reference, softmax

import particles
from hessian import along_trajectory, read_curvature
from hessian.flow import random_target
from hessian.kinds import KINDS

F64 = torch.float64


def test_driver_dense_norms_trace_eigenvalues_match_reference(tmp_path):
    # a batch of 3 systems, each with its own Q, K, V (USA would work the same; SA keeps it clustering)
    rng = np.random.default_rng(1)
    B, n, d = 3, 5, 3
    x0 = np.stack([particles.sample_sphere(n, d, seed=s) for s in range(B)])
    Q, K, V = (np.eye(d) + 0.3 * rng.standard_normal((B, d, d)) for _ in range(3))
    traj = euler_run(x0, beta=1.5, t_max=2.0, dt=0.1, Q=Q, K=K, V=V)
    curv = along_trajectory(traj, every=7, dense=True)
    assert list(curv.frames) == [0, 7, 14, 20] and np.allclose(curv.ts, traj.ts[[0, 7, 14, 20]])
    Y = random_target((B, n, d), 0)
    P = 3 * d * d
    for f, frame in enumerate(curv.frames):
        for b in range(B):
            X = torch.from_numpy(np.asarray(traj.xs[frame, b]))
            ref = reference(
                X, *(torch.from_numpy(M[b]) for M in (Q, K, V)), torch.from_numpy(Y[b]), 1.5, "SA", "target"
            )
            scale = float(ref[0].abs().max())
            np.testing.assert_allclose(curv.H[f, b], ref[0].numpy(), rtol=0, atol=1e-10 * scale)
            np.testing.assert_allclose(curv.H_o[f, b], ref[1].numpy(), rtol=0, atol=1e-10 * scale)
            for k, M in enumerate(ref):
                blocks = M.numpy().reshape(3, P // 3, 3, P // 3)
                np.testing.assert_allclose(
                    curv.norms[f, b, k], np.sqrt((blocks**2).sum(axis=(1, 3))), rtol=1e-10, atol=1e-12 * scale
                )
                np.testing.assert_allclose(curv.trace[f, b, k], np.trace(M.numpy()), rtol=1e-10, atol=1e-12 * scale)
            ev = np.linalg.eigvalsh(ref[0].numpy())
            np.testing.assert_allclose(curv.top_eigenvalue[f, b], ev[-1], rtol=0, atol=1e-10 * scale)
            sigma = np.linalg.eigvalsh(X.numpy().T @ X.numpy() / n)[::-1]
            np.testing.assert_allclose(curv.sigma_eigenvalues[f, b], sigma, rtol=0, atol=1e-14)
    assert curv.top_eigenvalue.shape == (4, B)
    # chunking is an implementation detail: one configuration per call gives the same numbers
    one = along_trajectory(traj, every=7, chunk_size=1)
    np.testing.assert_allclose(one.norms, curv.norms, rtol=1e-12, atol=0)


def test_next_loss_targets_the_next_frame():
    # "next": MSE of F(X_k) against (X_{k+1} - X_k) / (t_{k+1} - t_k); the last frame has no target
    x0 = particles.sample_sphere(6, 3, seed=3)
    traj = euler_run(x0, beta=1.0, t_max=1.0, dt=0.1)
    curv = along_trajectory(traj, loss="next", every=4, dense=True)
    assert list(curv.frames) == [0, 4, 8]
    I = torch.eye(3, dtype=F64)
    for f, k in enumerate(curv.frames):
        X, X1 = (torch.from_numpy(np.asarray(traj.xs[j])) for j in (k, k + 1))
        Y = (X1 - X) / (traj.ts[k + 1] - traj.ts[k])
        H = reference(X, I, I, I, Y, 1.0, "SA", "target")[0]
        np.testing.assert_allclose(curv.H[f], H.numpy(), rtol=0, atol=1e-10 * float(H.abs().max()))
    # the residual F - Y is the radial part <x_i, v_i> x_i that the flow removes (F is unprojected), plus
    # the step error: tangentially the layer reproduces the flow
    for f, k in enumerate(curv.frames):
        X, X1 = (np.asarray(traj.xs[j]) for j in (k, k + 1))
        F = np.einsum("ij,jg->ig", softmax(X @ X.T), X)
        R = F - (X1 - X) / (traj.ts[k + 1] - traj.ts[k])
        tangential = R - (R * X).sum(1, keepdims=True) * X
        assert np.abs(tangential).max() < 0.1 * np.abs(R).max()


@pytest.fixture(scope="module")
def clustering_run():
    """SA, Q = K = V = I, d = 3, beta = 1: a.e. start clusters (Thm 6.1 of Geshkovski et al., 2023)."""
    x0 = np.stack([particles.sample_sphere(8, 3, seed=s) for s in range(2)])
    traj = euler_run(x0, beta=1.0, t_max=40.0, dt=0.1)
    return traj, along_trajectory(traj, every=5)


def test_query_key_curvature_collapses_as_clusters_merge(clustering_run):
    _, curv = clustering_run
    counts = curv.cluster_count
    assert np.all(counts[0] == 8) and np.all(counts[-1] == 1)
    for kind in KINDS:
        for block in ("Q", "K"):
            norm = curv.block_norm(kind, block)
            # from O(0.01 - 1) at the start to far below rounding of the O(1) value curvature at the end
            assert np.all(norm[-1] < 1e-12 * norm.max(axis=0)), (kind, block)
    v = curv.block_norm("H_o", "V")
    assert np.all(v[-1] > 0.5 * v.max(axis=0))
    # the fall happens with the merging: once one cluster is left the Q/K norms keep falling
    q = curv.block_norm("H", "Q").max(axis=1)
    # (down to 1e-30 of the start; below, the norms reach the rounding of the token differences)
    one = (counts.max(axis=1) == 1) & (q > 1e-30 * q.max())
    assert one.sum() > 10 and np.all(np.diff(q[one]) < 0)


# exponents in lambda_2(Sigma_xx) ~ spread^2 near one cluster: M2 ~ spread^2, M3 ~ spread^3 (note §2.12)
CLUSTER_POWER = {
    ("H_o", "Q", "Q"): 2.0,
    ("H_o", "K", "K"): 2.0,
    ("H_o", "Q", "V"): 1.0,
    ("H_f", "Q", "Q"): 1.5,
    ("H_f", "Q", "K"): 1.0,
    ("H_f", "Q", "V"): 1.0,
}


@pytest.mark.parametrize("key", sorted(CLUSTER_POWER))
def test_cluster_power_law_in_sigma(clustering_run, key):
    # log-log slope of the block norm against the largest non-leading eigenvalue of Sigma_xx over the late
    # (one-cluster, exponential-approach) frames; the slopes are those of the moment degrees within 0.05
    _, curv = clustering_run
    lam2 = curv.sigma_eigenvalues[..., 1]
    norm = curv.block_norm(*key)
    for b in range(lam2.shape[1]):
        late = (curv.cluster_count[:, b] == 1) & (lam2[:, b] < 1e-6) & (lam2[:, b] > 1e-24)
        assert late.sum() >= 5
        slope = np.polyfit(np.log(lam2[late, b]), np.log(norm[late, b]), 1)[0]
        assert abs(slope - CLUSTER_POWER[key]) < 0.05, (key, b, slope)


# hessian.md §2.4: block norm ~ s^p for X -> s X (s -> 0), weights and target fixed; (H_o, H_f, H)


def test_write_and_read_back_with_the_trajectory(tmp_path):
    path = tmp_path / "run.h5"
    x0 = particles.sample_sphere(6, 3, seed=0)
    particles.io.save(path, euler_run(x0, beta=1.0, t_max=2.0, dt=0.1))
    curv = along_trajectory(path, every=4, dense=True)
    back = read_curvature(path)
    for field in ("ts", "frames", "norms", "trace", "top_eigenvalue", "H", "H_o", "sigma_eigenvalues", "cluster_count"):
        np.testing.assert_array_equal(getattr(back, field), getattr(curv, field))
    assert back.settings["loss"] == "target" and back.settings["dynamics"] == "SA" and back.settings["every"] == 4
    traj = particles.load(path)
    np.testing.assert_array_equal(traj.ts[back.frames], back.ts)
    obs = particles.io.read_observable(path, "curvature.target.norms")
    assert obs.value.shape == (21, 3, 3, 3) and np.isnan(obs.value[1]).all() and not np.isnan(obs.value[4]).any()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        along_trajectory(path, every=4)
    # a rewrite without dense output hides the older dense fields
    along_trajectory(path, every=10, overwrite=True, eigenvalues=False)
    back = read_curvature(path)
    assert back.H is None and back.top_eigenvalue is None and list(back.frames) == [0, 10, 20]
    along_trajectory(path, loss="energy")
    assert read_curvature(path, "energy").norms.shape == (21, 3, 3, 3)
    with pytest.raises(KeyError, match="next"):
        read_curvature(path, "next")


def test_guards(tmp_path):
    traj = euler_run(particles.sample_sphere(4, 3, seed=0), beta=1.0, t_max=0.3, dt=0.1)
    with pytest.raises(TypeError, match="traj must be"):
        along_trajectory(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="loss must be one of"):
        along_trajectory(traj, loss="mse")
    with pytest.raises(ValueError, match="every must be an int >= 1, got 0"):
        along_trajectory(traj, every=0)
    with pytest.raises(TypeError, match="every must be an int"):
        along_trajectory(traj, every=1.5)
    with pytest.raises(TypeError, match="dense must be a bool"):
        along_trajectory(traj, dense="yes")
    with pytest.raises(ValueError, match="write=True needs a stored run"):
        along_trajectory(traj, write=True)
    with pytest.raises(ValueError, match="P = 3 d\\^2 = 27 parameters"):
        along_trajectory(traj, max_params=20)
    with pytest.raises(ValueError, match="max_dense_bytes"):
        along_trajectory(traj, dense=True, max_dense_bytes=1000)
    one = euler_run(particles.sample_sphere(4, 3, seed=0), beta=1.0, t_max=0.0, dt=0.1)
    with pytest.raises(ValueError, match="at least 2 frames"):
        along_trajectory(one, loss="next")
    with pytest.raises(ValueError, match="kind must be one of"):
        along_trajectory(traj).block_norm("G", "Q")
    usa = dataclasses.replace(traj.params, dynamics="USA")
    big = particles.Trajectory(ts=traj.ts, xs=traj.xs * 40.0, params=usa)  # logits of 1600: e^1600 = inf
    with pytest.raises(RuntimeError, match="non-finite curvature at frame 0"):
        along_trajectory(big)


def test_top_eigenvalue_without_threadpoolctl(monkeypatch):
    # the fallback (torch eigvalsh) and the dsyevr path give the same top eigenvalue to rounding
    import sys

    traj = euler_run(np.stack([particles.sample_sphere(5, 3, seed=s) for s in range(2)]), beta=1.0, t_max=1.0, dt=0.1)
    fast = along_trajectory(traj, every=3, dense=True)
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    slow = along_trajectory(traj, every=3)
    exact = np.linalg.eigvalsh(fast.H)[..., -1]
    scale = np.abs(fast.H).max()
    np.testing.assert_allclose(fast.top_eigenvalue, exact, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(slow.top_eigenvalue, exact, rtol=0, atol=1e-12 * scale)
