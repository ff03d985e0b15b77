"""The clustering results of Geshkovski et al. (2023) checked numerically, with the
parameters and tolerances of the theory note (shared/theory/particles.md, sections 3-5)."""
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from particles import (clustering_density, count_clusters, energy, phase_diagram,
                       sample_sphere, simulate)


def rho_ode(rho0, beta, n, dynamics, ts):
    """Common inner product of an equiangular configuration (theory note, section 3)."""
    def rhs(t, r):
        if dynamics == "SA":
            return 2 * (1 - r) * (1 + (n - 1) * r) / (np.exp(beta * (1 - r)) + n - 1)
        return (2 / n) * np.exp(beta * r) * (1 - r) * (1 + (n - 1) * r)

    sol = solve_ivp(rhs, (0, ts[-1]), [rho0], t_eval=ts, rtol=1e-12, atol=1e-14, method="DOP853")
    return sol.y[0]


def equiangular(n, rho0):
    """Unit vectors in R^n with all pairwise inner products rho0 (> -1/(n-1))."""
    gram = (1 - rho0) * np.eye(n) + rho0 * np.ones((n, n))
    return np.linalg.cholesky(gram)


def pairwise(xs):
    n = xs.shape[-2]
    g = xs @ np.swapaxes(xs, -1, -2)
    return g[..., ~np.eye(n, dtype=bool)]


@pytest.mark.parametrize("dynamics", ["SA", "USA"])
@pytest.mark.parametrize("beta", [0.0, 1.0, 5.0])
def test_equiangular_start_stays_equiangular(dynamics, beta):
    """Thm 6.8 (orthogonal start) and its extension to any rho_0 (section 3): every pair
    follows the scalar ODE. Check 2: within 1e-6 for t <= 10 with RK4 at dt = 1e-3 (the note
    measured <= 5.6e-8, scaling as dt^4; a sign error gives 0.6, an SA/USA swap 0.33)."""
    n = 8
    x0 = np.stack([equiangular(n, r) for r in (0.0, 0.3, -0.1)])
    traj = simulate(x0, beta=beta, t_max=10.0, dt=1e-3, dynamics=dynamics, method="rk4",
                    save_every=250)
    for b, rho0 in enumerate((0.0, 0.3, -0.1)):
        rho = rho_ode(rho0, beta, n, dynamics, traj.ts)
        err = np.abs(pairwise(traj.xs[:, b]) - rho[:, None]).max()
        assert err < 1e-6, (rho0, err)


@pytest.mark.parametrize("dynamics", ["SA", "USA"])
def test_high_dimension_limit(dynamics):
    """Thm 6.9: for i.i.d. uniform starts as d -> infinity, all pairs follow rho with
    rho_0 = 0. Check 3 (n = 8, d = 2000, beta = 1, 16 systems): each system's mean pairwise
    product within 3 d^-1/2 of rho, the batch mean within 1.5 d^-1/2."""
    n, d, beta = 8, 2000, 1.0
    x0 = sample_sphere(n, d, batch=16, seed=11)
    traj = simulate(x0, beta=beta, t_max=8.0, dt=1e-2, dynamics=dynamics, method="rk4",
                    save_every=5)
    rho = rho_ode(0.0, beta, n, dynamics, traj.ts)
    per_system = pairwise(traj.xs).mean(axis=-1)  # (frames, systems)
    assert np.abs(per_system - rho[:, None]).max() < 3 / np.sqrt(d)
    assert np.abs(per_system.mean(axis=1) - rho).max() < 1.5 / np.sqrt(d)


@pytest.mark.parametrize("dynamics", ["SA", "USA"])
@pytest.mark.parametrize("method, dt", [("rk4", 1e-2), ("euler", 0.1)])
def test_energy_never_decreases(dynamics, method, dt):
    """Section 1: dE_beta/dt >= 0 along USA (a gradient flow) and along SA. Check 4: n = 16,
    d = 3, beta = 2, 32 systems, t <= 20: non-decreasing at every step to relative 1e-12
    (measured worst step -1.3e-15; a sign error drops it by up to 6.5e-3 per step). The
    authors' Euler scheme at h = 0.1 is monotone too."""
    x0 = sample_sphere(16, 3, batch=32, seed=12)
    traj = simulate(x0, beta=2.0, t_max=20.0, dt=dt, dynamics=dynamics, method=method)
    E = energy(traj.xs, 2.0)
    steps = np.diff(E, axis=0) / E[:-1]
    assert steps.min() > -1e-12


@pytest.mark.parametrize("dynamics", ["SA", "USA"])
@pytest.mark.parametrize("d, beta", [(2, 0.0), (2, 0.5), (3, 0.0), (3, 0.5), (3, 1.0)])
def test_single_cluster(dynamics, d, beta):
    """Thm 4.1 (beta = 0), Thm 4.3 (beta <= C/n; d = 2: beta <= 1), Thm 6.1 (d >= 3, every
    beta): a.e. start clusters. Check 5: n = 16, 64 systems, one single-linkage cluster at
    <x_i, x_j> > 1 - 1e-4 in every system by t = 60 (measured: all by t <= 21)."""
    x0 = sample_sphere(16, d, batch=64, seed=13)
    traj = simulate(x0, beta=beta, t_max=60.0, dt=0.05, dynamics=dynamics, method="rk4",
                    save_every=1200)
    assert np.all(count_clusters(traj.final, tol=1e-4) == 1)


def test_cone_collapse_is_exponential_for_any_QK(rng):
    """Lemma 6.4: if all tokens start in an open hemisphere, they converge exponentially to
    one point, for any Q, K with V = I. n = 6 in a cap around e_1, d = 3, beta = 1."""
    d = 3
    x0 = sample_sphere(6, d, seed=14)
    x0[:, 0] = np.abs(x0[:, 0]) + 0.2
    x0 /= np.linalg.norm(x0, axis=1, keepdims=True)
    Q, K = rng.standard_normal((2, d, d)) / np.sqrt(d)
    traj = simulate(x0, beta=1.0, t_max=40.0, dt=0.05, Q=Q, K=K, method="rk4", save_every=20)
    gap = 1 - pairwise(traj.xs).min(axis=-1)
    # Fit the exponential phase: past the transient, above the rounding floor.
    fit = (traj.ts > 5) & (gap > 1e-10)
    assert fit.sum() >= 5
    slope, _ = np.polyfit(traj.ts[fit], np.log(gap[fit]), 1)
    assert slope < -0.05 and gap[-1] < 1e-10


def test_wendel_d_at_least_n_collapses():
    """Thm 6.3: d >= n and i.i.d. uniform starts: a.s. exponential convergence to one point
    (all points lie in an open hemisphere by Wendel's theorem)."""
    x0 = sample_sphere(5, 6, batch=8, seed=15)
    traj = simulate(x0, beta=2.0, t_max=60.0, dt=0.05, method="rk4", save_every=1200)
    assert np.all(count_clusters(traj.final, tol=1e-8) == 1)


def authors_sa_densities(beta, n, d, batch, steps, h, rng):
    """Per-system density after `steps` steps of the authors' SA phase-diagram scheme
    (phase-diagrams.py, step_1 with use_softmax; theory note, section 2), in plain numpy:
    fresh uniform starts, x_i <- normalize(x_i + h sum_j softmax_j(beta <x_i, x_j>) x_j),
    then the fraction of ordered pairs i != j with <x_i, x_j> > 0.999."""
    x = rng.standard_normal((batch, n, d))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    for _ in range(steps):
        logits = beta * (x @ np.swapaxes(x, 1, 2))
        weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
        weights /= weights.sum(axis=-1, keepdims=True)
        x = x + h * (weights @ x)
        x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return (pairwise(x) > 0.999).mean(axis=-1)


# Betas where SA and USA (and SA at half the beta) end far apart at t = 30.
PHASE_DIAGRAM_BETAS = (2.0, 3.0, 5.0)
# |z| > 4.5 has normal probability 6.8e-6 per beta, 2e-5 for the three.
PHASE_DIAGRAM_Z = 4.5


def test_phase_diagram_values(seed=0):
    """Check 6 (d = 2, n = 32, SA, h = 0.1, density at t = 30) against the authors' scheme
    written above in numpy, on 256 other systems: at beta = 2, 3, 5 the mean densities
    (about 0.81, 0.59, 0.47) differ by less than 4.5 standard errors of the difference,
    estimated from the spread of the per-system densities (256 bounded fractions per
    side: the normal approximation holds). False-failure rate about 2e-5; over 30 seeds
    the 90 z had standard deviation 1.0 and largest |z| 3.0. Fails with USA for SA (every
    beta's |z| >= 7.4 over those seeds) and with beta halved (the largest |z| >= 23)."""
    batch, steps, h = 256, 300, 0.1
    result = phase_diagram(PHASE_DIAGRAM_BETAS, batch=batch, t_max=steps * h, dt=h,
                           checkpoints=2, seed=seed)
    rng = np.random.default_rng([seed, 2024])
    for beta, ours in zip(PHASE_DIAGRAM_BETAS, result.final_density):
        theirs = authors_sa_densities(beta, 32, 2, batch, steps, h, rng)
        stderr = np.sqrt((ours.var(ddof=1) + theirs.var(ddof=1)) / batch)
        z = (ours.mean() - theirs.mean()) / stderr
        assert abs(z) < PHASE_DIAGRAM_Z, (beta, ours.mean(), theirs.mean(), z)


def test_small_beta_clusters_with_high_probability():
    """Thm 4.2: P(clusters) -> 1 as beta -> 0+ for i.i.d. uniform starts (d = 2, n = 32):
    at beta = 0.1 every one of 64 systems is one cluster by t = 30."""
    x0 = sample_sphere(32, 2, batch=64, seed=16)
    final = simulate(x0, beta=0.1, t_max=30.0, dt=0.1).final
    assert np.all(count_clusters(final, tol=1e-3) == 1)
    assert clustering_density(final).min() == 1.0


def test_circle_usa_is_the_angle_ode():
    """Section 7: on the circle USA reads theta_i' = -(1/n) sum_j e^{beta cos(theta_i -
    theta_j)} sin(theta_i - theta_j), a gradient ascent of E_beta (Kuramoto at beta = 0).
    RK4 at dt = 1e-3 against DOP853 at rtol 1e-12: 1e-9 is ~100x the RK4 error here."""
    n, beta = 7, 3.0
    theta0 = np.random.default_rng(17).uniform(0, 2 * np.pi, n)

    def rhs(t, th):
        diff = th[:, None] - th[None, :]
        return -(np.exp(beta * np.cos(diff)) * np.sin(diff)).sum(axis=1) / n

    ts = np.linspace(0, 5, 11)
    ref = solve_ivp(rhs, (0, 5), theta0, t_eval=ts, rtol=1e-12, atol=1e-14, method="DOP853").y.T
    x0 = np.stack([np.cos(theta0), np.sin(theta0)], axis=1)
    traj = simulate(x0, beta=beta, t_max=5.0, dt=1e-3, dynamics="USA", method="rk4", save_every=500)
    want = np.stack([np.cos(ref), np.sin(ref)], axis=-1)
    np.testing.assert_allclose(traj.xs, want, rtol=0, atol=1e-9)
