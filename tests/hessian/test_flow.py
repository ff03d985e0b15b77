"""Curvature along the particle flow (hessian.flow): exact blocks against autograd, the clustering theory of
hessian.md §2.12, the X-degrees of §2.4, and the HDF5 round trip."""

import dataclasses
import math

import numpy as np
import pytest
import torch

import particles
from hessian import along_trajectory, flow_hessian, read_curvature
from hessian.flow import BLOCKS, KINDS, random_target

F64 = torch.float64


def reference(X, Q, K, V, Y, beta, dynamics, loss):
    """Independent reference: torch.func.hessian of l(w) on the flat [vec Q, vec K, vec V] and
    H_o = J^T (d^2 loss/dF^2) J with J = jacrev(vec F), written from the flow's velocity formula."""
    n, d = X.shape

    def output(w):
        Qw, Kw, Vw = w[: d * d].reshape(d, d), w[d * d : 2 * d * d].reshape(d, d), w[2 * d * d :].reshape(d, d)
        # v_i = sum_j w_ij V x_j with logits beta <Q x_i, K x_j>
        logits = beta * torch.einsum("pa,ia,pb,jb->ij", Qw, X, Kw, X)
        weights = torch.exp(logits) / n if dynamics == "USA" else torch.softmax(logits, dim=1)
        return torch.einsum("ij,ga,ja->ig", weights, Vw, X)

    if loss == "energy":

        def loss_fn(F):
            G = F @ F.T
            return (torch.expm1(beta * G) / beta).sum() / (2 * n * n) if beta > 0 else G.sum() / (2 * n * n)
    else:

        def loss_fn(F):
            return ((F - Y) ** 2).sum() / (n * d)

    w = torch.cat([Q.reshape(-1), K.reshape(-1), V.reshape(-1)])
    H = torch.func.hessian(lambda w: loss_fn(output(w)))(w)
    F = output(w)
    J = torch.func.jacrev(lambda w: output(w).reshape(-1))(w)
    Lam = torch.func.hessian(lambda f: loss_fn(f.reshape(n, d)))(F.reshape(-1))
    H_o = J.T @ Lam @ J
    return H, H_o, H - H_o


def euler_run(x0, *, beta, t_max, dt, Q=None, K=None, V=None):
    """The authors' scheme x_i <- (x_i + dt v_i) / |x_i + dt v_i| (SA) in plain numpy, as a Trajectory:
    the tests get their flows without the Numba solver (whose first compilation is slow on shared cores)."""
    params = particles.SimulationParams(beta=beta, t_max=t_max, dt=dt, Q=Q, K=K, V=V)
    ts = params.step_grid()[0]
    d = x0.shape[-1]
    Q, K, V = (np.eye(d) if M is None else M for M in (Q, K, V))
    x = np.array(x0, dtype=np.float64)
    xs = [x]
    for _ in ts[1:]:
        logits = beta * np.einsum("...pa,...ia,...pb,...jb->...ij", Q, x, K, x)
        v = np.einsum("...ij,...ga,...ja->...ig", _softmax(logits), V, x)
        x = x + dt * v
        x = x / np.linalg.norm(x, axis=-1, keepdims=True)
        xs.append(x)
    return particles.Trajectory(ts=ts, xs=np.stack(xs), params=params)


def _softmax(T):
    E = np.exp(T - T.max(-1, keepdims=True))
    return E / E.sum(-1, keepdims=True)


def _random_problem(seed, n=5, d=3, scale=0.8):
    g = torch.Generator().manual_seed(seed)
    X = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=F64), dim=1)
    Q, K, V = (scale * torch.randn(d, d, generator=g, dtype=F64) for _ in range(3))
    return X, Q, K, V, torch.randn(n, d, generator=g, dtype=F64)


@pytest.mark.parametrize("dynamics", ["SA", "USA"])
@pytest.mark.parametrize("loss", ["target", "energy"])
@pytest.mark.parametrize("beta", [0.0, 1.3])
def test_flow_hessian_matches_autograd(dynamics, loss, beta):
    # float64 closed forms vs autograd: agreement is at rounding level (observed <= 1e-14 relative);
    # 1e-10 relative to the largest entry leaves room for the sums of n d^2 products
    # weights of scale 0.4: USA outputs stay O(1), so that e^{beta <f_i, f_j>} of the energy stays finite
    X, Q, K, V, Y = _random_problem(7, scale=0.4)
    H_o, H_f = flow_hessian(X, Q, K, V, Y, beta=beta, dynamics=dynamics, loss=loss)
    H_ref, H_o_ref, H_f_ref = reference(X, Q, K, V, Y, beta, dynamics, loss)
    scale = H_ref.abs().max()
    assert scale > 0
    torch.testing.assert_close(H_o, H_o_ref, rtol=0, atol=1e-10 * scale)
    torch.testing.assert_close(H_f, H_f_ref, rtol=0, atol=1e-10 * scale)
    torch.testing.assert_close(H_o + H_f, H_ref, rtol=0, atol=1e-10 * scale)
    for M in (H_o, H_f):
        torch.testing.assert_close(M, M.T, rtol=0, atol=1e-13 * scale)


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
        F = np.einsum("ij,jg->ig", _softmax(X @ X.T), X)
        R = F - (X1 - X) / (traj.ts[k + 1] - traj.ts[k])
        tangential = R - (R * X).sum(1, keepdims=True) * X
        assert np.abs(tangential).max() < 0.1 * np.abs(R).max()


def test_one_cluster_kills_the_query_key_curvature_but_not_the_value_curvature():
    """All tokens at one point x (SA). The softmax then gives A = 11^T / n, so m_i = x and every centred
    moment of the attention distributions vanishes: M2_i = sum_j a_ij (x_j - m_i)(x_j - m_i)^T = 0 and
    M3_i = 0. dF/dQ = beta V M2_i K^T (x) x_i^T and dF/dK = beta V M2_i (x) q_i^T are 0, so the Q and K
    rows of J, hence of H_o = J^T Lambda J, vanish; the Q/K blocks of H_f are built from M3_i, M2_i and
    s_i = M2_i u_i (note §2.3), so they vanish too. F = x^T V^T per row is linear in V with dF_i/dV =
    I (x) m_i^T = I (x) x^T, hence H_o(V, V) = (2/(n d)) sum_i (I (x) x x^T) = (2/d) I (x) x x^T != 0."""
    rng = np.random.default_rng(5)
    n, d = 6, 3
    x = rng.standard_normal(d)
    x /= np.linalg.norm(x)
    X = torch.from_numpy(np.tile(x, (n, 1)))
    Q, K, V = (torch.from_numpy(rng.standard_normal((d, d))) for _ in range(3))
    Y = torch.from_numpy(rng.standard_normal((n, d)))
    for loss in ("target", "energy"):
        H_o, H_f = flow_hessian(X, Q, K, V, Y, beta=2.0, dynamics="SA", loss=loss)
        P = d * d
        for M in (H_o, H_f):
            # exactly zero up to the rounding of X - mean (identical rows: a few ulps)
            assert float(M[: 2 * P].abs().max()) < 1e-14 * float(H_o.abs().max())
        if loss == "target":
            expected = torch.kron(torch.eye(d, dtype=F64), torch.outer(X[0], X[0])) * 2.0 / d
            torch.testing.assert_close(H_o[2 * P :, 2 * P :], expected, rtol=0, atol=1e-15)
        assert float(H_o[2 * P :, 2 * P :].norm()) > 0.1
    # USA does not normalise: the weights e^{beta <Qx, Kx>} / n of the single point still depend on Q and K
    H_o, H_f = flow_hessian(X, Q, K, V, Y, beta=2.0, dynamics="USA", loss="target")
    assert float(H_o[:P, :P].norm()) > 1e-3 * float(H_o.norm())


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
DEGREES = {
    ("Q", "Q"): (6, 5, 5),
    ("K", "K"): (6, 5, 5),
    ("Q", "K"): (6, 3, 3),
    ("Q", "V"): (4, 3, 3),
    ("K", "V"): (4, 3, 3),
    ("V", "V"): (2, None, 2),
}


def test_scaled_configuration_follows_the_x_degrees_of_the_note():
    # the note's protocol: log2 of the norm ratio between s = 2e-3 and 1e-3, within 0.01 of the table
    X, Q, K, V, Y = _random_problem(11, n=6, d=3, scale=1.0)
    P = 9
    out = {}
    for s in (1e-3, 2e-3):
        H_o, H_f = flow_hessian(s * X, Q, K, V, Y, beta=1.0, dynamics="SA", loss="target")
        out[s] = {"H_o": H_o, "H_f": H_f, "H": H_o + H_f}
    span = {b: slice(i * P, (i + 1) * P) for i, b in enumerate(BLOCKS)}
    for (r, c), degrees in DEGREES.items():
        for kind, p in zip(("H_o", "H_f", "H"), degrees):
            n1, n2 = (float(out[s][kind][span[r], span[c]].norm()) for s in (1e-3, 2e-3))
            if p is None:
                assert n1 == 0.0 and n2 == 0.0
            else:
                assert abs(math.log2(n2 / n1) - p) < 0.01, (kind, r, c, math.log2(n2 / n1))


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


def test_cluster_power_law_table(clustering_run):
    # the pooled fits of hessian.flow.cluster_power_law agree with the per-system fits above (same theory)
    from hessian.flow import cluster_power_law

    rows = {(r["kind"], r["block"][0], r["block"][1]): r for r in cluster_power_law(clustering_run[1])}
    for key, p in CLUSTER_POWER.items():
        assert rows[key]["points"] >= 10 and abs(rows[key]["slope"] - p) < 0.05, rows[key]


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
