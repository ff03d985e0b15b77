"""The clustering results of Geshkovski et al. (2023) checked numerically, with the
parameters and tolerances of the theory note (shared/theory/particles.md, sections 3-5)."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from particles import clustering_density, count_clusters, energy, phase_diagram, sample_sphere, simulate


def rho_ode(rho0, beta, n, dynamics, ts):
    """Common inner product of an equiangular configuration (theory note, section 3).

    rho0: a number, giving rho at ts, (len(ts),); or an array (m,) of independent starts,
    giving (len(ts), m).
    """

    def rhs(t, r):
        if dynamics == "SA":
            return 2 * (1 - r) * (1 + (n - 1) * r) / (np.exp(beta * (1 - r)) + n - 1)
        return (2 / n) * np.exp(beta * r) * (1 - r) * (1 + (n - 1) * r)

    sol = solve_ivp(rhs, (0, ts[-1]), np.atleast_1d(rho0), t_eval=ts, rtol=1e-12, atol=1e-14, method="DOP853")
    return sol.y[0] if np.ndim(rho0) == 0 else sol.y.T


def contraction_rates(traj, low=1e-24, high=1e-8):
    """Per system, the rate r of the final collapse: sum_i |x_i - mean|^2 ~ e^{-2 r t},
    fitted where the spread lies in [low, high] (linear regime, above rounding); NaN for a
    system with fewer than 4 frames there.

    Near one cluster with V = I the softmax weights are uniform to first order, so each
    deviation u_i from the cluster obeys u_i' = e^{beta <Q x*, K x*>} (mean(u) - u_i) for USA
    and u_i' = mean(u) - u_i for SA, for any Q and K: rate e^beta (USA, Q = K = I) or 1
    (SA). The authors' Euler step at h multiplies deviations by 1 / (1 + h) (SA), a rate of
    log(1 + h) / h.
    """
    xs = traj.xs if traj.xs.ndim == 4 else traj.xs[:, None]
    spread = ((xs - xs.mean(axis=-2, keepdims=True)) ** 2).sum(axis=(-2, -1))
    rates = np.full(spread.shape[1], np.nan)
    for b, s in enumerate(spread.T):
        fit = (s > low) & (s < high)
        if fit.sum() >= 4:
            rates[b] = -np.polyfit(traj.ts[fit], np.log(s[fit]), 1)[0] / 2
    return rates


def energy_rate(xs, beta, dynamics):
    """dE_beta/dt at configurations xs (..., n, d) by the identities of the theory note
    (section 1): n^-3 sum_i |P_i S_i|^2 (USA), n^-2 sum_i |P_i S_i|^2 / Z_i (SA)."""
    n = xs.shape[-2]
    W = np.exp(beta * xs @ np.swapaxes(xs, -1, -2))
    S = W @ xs
    tangent = S - (S * xs).sum(axis=-1, keepdims=True) * xs
    squares = (tangent**2).sum(axis=-1)
    if dynamics == "USA":
        return squares.sum(axis=-1) / n**3
    return (squares / W.sum(axis=-1)).sum(axis=-1) / n**2


def equiangular(n, rho0):
    """Unit vectors in R^n with all pairwise inner products rho0 (> -1/(n-1))."""
    gram = (1 - rho0) * np.eye(n) + rho0 * np.ones((n, n))
    return np.linalg.cholesky(gram)


def pairwise(xs):
    n = xs.shape[-2]
    g = xs @ np.swapaxes(xs, -1, -2)
    return g[..., ~np.eye(n, dtype=bool)]


# d = 8 runs the fused kernels, d = 12 the dense field (the tokens padded with zeros).
@pytest.mark.parametrize("d", [8, 12])
@pytest.mark.parametrize("dynamics", ["SA", "USA"])
@pytest.mark.parametrize("beta", [0.0, 1.0, 5.0])
def test_equiangular_start_stays_equiangular(dynamics, beta, d):
    """Thm 6.8 (orthogonal start) and its extension to any rho_0 (section 3): every pair
    follows the scalar ODE. Check 2 (n = 8, rho_0 = 0, 0.3, -0.1, t <= 10, RK4): within
    1e-5, at dt = 1e-2 (measured RK4 error <= 4e-10), or 2e-3 for USA at beta = 5, whose
    rates reach e^5 (measured 8.5e-7, scaling as dt^4).

    Fails under: a sign flip (every case); the SA self-term dropped (SA); beta halved or
    logits / sqrt(d) (beta > 0); USA for SA (SA, beta > 0); a missing projection (beta > 0:
    at beta = 0 the unprojected field is linear and renormalising gives the projected flow
    exactly)."""
    n = 8
    x0 = np.stack([equiangular(n, r) for r in (0.0, 0.3, -0.1)])
    x0 = np.concatenate([x0, np.zeros((3, n, d - n))], axis=-1)
    dt = 2e-3 if (dynamics, beta) == ("USA", 5.0) else 1e-2
    traj = simulate(x0, beta=beta, t_max=10.0, dt=dt, dynamics=dynamics, method="rk4", save_every=round(0.25 / dt))
    rho = rho_ode(np.array([0.0, 0.3, -0.1]), beta, n, dynamics, traj.ts)
    err = np.abs(pairwise(traj.xs) - rho[:, :, None]).max(axis=(0, 2))
    assert err.max() < 1e-5, err


@pytest.mark.parametrize("dynamics", ["SA", "USA"])
def test_high_dimension_limit(dynamics):
    """Thm 6.9: for i.i.d. uniform starts as d -> infinity, all pairs follow rho with
    rho_0 = 0. Check 3 (n = 8, d = 2000, beta = 1, 16 systems, t <= 8).

    (a) Each system's mean pairwise product within 5 d^-1/2 of rho. To first order it is
    d rho(t) / d rho_0 times the mean initial product (normal, sd (28 d)^-1/2): over 64
    systems the largest deviation had median 0.36 d^-1/2 (SA) and 0.54 d^-1/2 (USA), a
    normal sd of 0.53 and 0.8 d^-1/2, so 5 d^-1/2 is over 6 sd (< 1e-8 per system).
    (b) Sharper: started from its own mean initial product rho_0^b (not 0), the ODE leaves
    only second-order terms, O(1/d): within 10/d. Measured over 1024 systems: mean 0.65/d,
    max 1.45/d (SA); mean 0.99/d, 99th percentile 1.98/d, max 3.1/d (USA); an exponential
    tail through the last two puts P(> 10/d) below 1e-9 per system.
    False-failure rate of the test < 1e-6.

    Fails under: beta halved, logits / sqrt(d), a sign flip (both); USA for SA and the SA
    self-term dropped (SA). A missing projection moves rho by only ~5e-4 here: see the
    equiangular test at d = 12 for the dense field's projection."""
    n, d, beta = 8, 2000, 1.0
    x0 = sample_sphere(n, d, batch=16, seed=11)
    traj = simulate(x0, beta=beta, t_max=8.0, dt=1e-2, dynamics=dynamics, method="rk4", save_every=5)
    per_system = pairwise(traj.xs).mean(axis=-1)  # (frames, systems)
    rho = rho_ode(0.0, beta, n, dynamics, traj.ts)
    assert np.abs(per_system - rho[:, None]).max() < 5 / np.sqrt(d)
    own_rho = rho_ode(per_system[0], beta, n, dynamics, traj.ts)
    assert np.abs(per_system - own_rho).max() < 10 / d


# The authors' Euler scheme at h = 0.1 is tested as it is: USA at beta = 2 is past the
# step-size warning's limit (dt L = 2.7 > 2).
@pytest.mark.filterwarnings("ignore::particles.StepSizeWarning")
@pytest.mark.parametrize("dynamics", ["SA", "USA"])
def test_authors_euler_never_decreases_the_energy(dynamics):
    """Section 1: dE_beta/dt >= 0 along USA (a gradient flow) and along SA; check 4 found
    the authors' Euler scheme at h = 0.1 monotone too: n = 16, d = 3, beta = 2, 32 systems,
    t <= 20, non-decreasing at every step to relative 1e-12 (measured worst step -1.3e-15).

    Fails under: a sign flip only (any positive rescaling of the field still ascends: the
    rate identity below is the quantitative check)."""
    x0 = sample_sphere(16, 3, batch=32, seed=12)
    traj = simulate(x0, beta=2.0, t_max=20.0, dt=0.1, dynamics=dynamics, method="euler")
    E = energy(traj.xs, 2.0)
    steps = np.diff(E, axis=0) / E[:-1]
    assert steps.min() > -1e-12


@pytest.mark.parametrize("dynamics", ["SA", "USA"])
def test_energy_rate_identity(dynamics):
    """Section 1: along the flow, dE_beta/dt = n^-3 sum_i |P_i S_i|^2 (USA) and
    n^-2 sum_i |P_i S_i|^2 / Z_i (SA). n = 16, d = 3, beta = 2, 8 systems, RK4 at dt = 0.01
    for t <= 5, every step saved: E(t) - E(0) against Simpson's rule on the rate over pairs
    of steps, within 1e-6 of E(5) - E(0) (measured 1e-10 for SA, 9e-8 for USA, the RK4 and
    Simpson errors at rates up to e^beta).

    Fails under: beta halved, logits / sqrt(d), a sign flip, a missing projection, wrong
    RK4 weights (both); USA for SA and the SA self-term dropped (SA)."""
    beta = 2.0
    x0 = sample_sphere(16, 3, batch=8, seed=12)
    traj = simulate(x0, beta=beta, t_max=5.0, dt=0.01, dynamics=dynamics, method="rk4")
    E = energy(traj.xs, beta)
    rate = energy_rate(traj.xs, beta, dynamics)
    h = traj.ts[1] - traj.ts[0]
    simpson = h / 3 * (rate[:-2:2] + 4 * rate[1:-1:2] + rate[2::2])
    drift = np.cumsum(E[2::2] - E[:-2:2] - simpson, axis=0)
    assert np.abs(drift / (E[-1] - E[0])).max() < 1e-6


@pytest.mark.parametrize("dynamics", ["SA", "USA"])
@pytest.mark.parametrize("d, beta", [(2, 0.0), (2, 0.5), (3, 0.0), (3, 0.5), (3, 1.0)])
def test_single_cluster(dynamics, d, beta):
    """Thm 4.1 (beta = 0), Thm 4.3 (beta <= C/n; d = 2: beta <= 1), Thm 6.1 (d >= 3, every
    beta): a.e. start clusters. Check 5: n = 16, 64 systems, one single-linkage cluster at
    <x_i, x_j> > 1 - 1e-4 in every system by t = 60 (measured: all by t <= 21). Then the
    collapse runs at the linearised rate (``contraction_rates``): 1 for SA, e^beta for USA,
    within 1e-3. Over 20 other seeds (12800 systems) the spread fell below 1e-8 by
    t = 27.5 at the latest and the worst rate error was 5.6e-6 (RK4's error at dt = 0.05).

    Fails under: a sign flip, wrong RK4 weights (every case); the SA self-term dropped (SA,
    rate n / (n - 1)); USA for SA (SA, beta > 0); beta halved, logits / sqrt(d) and a missing
    projection (USA, beta > 0; with SA the common scale of the unprojected stages cancels
    in the softmax)."""
    x0 = sample_sphere(16, d, batch=64, seed=13)
    traj = simulate(x0, beta=beta, t_max=60.0, dt=0.05, dynamics=dynamics, method="rk4", save_every=5)
    assert np.all(count_clusters(traj.final, tol=1e-4) == 1)
    want = 1.0 if dynamics == "SA" else np.exp(beta)
    np.testing.assert_allclose(contraction_rates(traj), want, rtol=1e-3)


def test_cone_collapse_is_exponential_for_any_QK(rng):
    """Lemma 6.4: if all tokens start in an open hemisphere, they converge exponentially to
    one point, for any Q, K with V = I. n = 6 in a cap around e_1, d = 3, beta = 1, SA:
    collapsed to 1e-10 by t = 40, at the linearised rate 1 of SA for any Q, K
    (``contraction_rates``), within 1e-3 (measured 8e-7).

    Fails under: a sign flip, USA for SA, the SA self-term dropped, wrong RK4 weights."""
    d = 3
    x0 = sample_sphere(6, d, seed=14)
    x0[:, 0] = np.abs(x0[:, 0]) + 0.2
    x0 /= np.linalg.norm(x0, axis=1, keepdims=True)
    Q, K = rng.standard_normal((2, d, d)) / np.sqrt(d)
    traj = simulate(x0, beta=1.0, t_max=40.0, dt=0.05, Q=Q, K=K, method="rk4", save_every=5)
    assert 1 - pairwise(traj.final).min() < 1e-10
    np.testing.assert_allclose(contraction_rates(traj), 1.0, rtol=1e-3)


@pytest.mark.parametrize("dynamics", ["SA", "USA"])
def test_wendel_d_at_least_n_collapses(dynamics):
    """Thm 6.3: d >= n and i.i.d. uniform starts: a.s. exponential convergence to one point
    (all points lie in an open hemisphere by Wendel's theorem). n = 5, d = 6, beta = 2,
    8 systems: one cluster at 1 - 1e-8 by t = 60, collapsing at the linearised rate
    (``contraction_rates``) 1 (SA) or e^beta (USA) within 1e-3 (measured 1.3e-6 and 2.1e-4,
    RK4's error at dt = 0.05).

    Fails under: a sign flip, wrong RK4 weights (both); USA for SA, the SA self-term
    dropped (SA); beta halved, logits / sqrt(d), a missing projection (USA)."""
    x0 = sample_sphere(5, 6, batch=8, seed=15)
    traj = simulate(x0, beta=2.0, t_max=60.0, dt=0.05, dynamics=dynamics, method="rk4", save_every=5)
    assert np.all(count_clusters(traj.final, tol=1e-8) == 1)
    want = 1.0 if dynamics == "SA" else np.exp(2.0)
    np.testing.assert_allclose(contraction_rates(traj), want, rtol=1e-3)


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
    result = phase_diagram(PHASE_DIAGRAM_BETAS, batch=batch, t_max=steps * h, dt=h, checkpoints=2, seed=seed)
    rng = np.random.default_rng([seed, 2024])
    for beta, ours in zip(PHASE_DIAGRAM_BETAS, result.final_density):
        theirs = authors_sa_densities(beta, 32, 2, batch, steps, h, rng)
        stderr = np.sqrt((ours.var(ddof=1) + theirs.var(ddof=1)) / batch)
        z = (ours.mean() - theirs.mean()) / stderr
        assert abs(z) < PHASE_DIAGRAM_Z, (beta, ours.mean(), theirs.mean(), z)


def test_small_beta_clusters_with_high_probability():
    """Thm 4.2: P(clusters) -> 1 as beta -> 0+ for i.i.d. uniform starts (d = 2, n = 32):
    at beta = 0.1 every one of 64 systems is one cluster by t = 30 with the authors' Euler
    scheme at h = 0.1, contracting by exactly 1 / (1 + h) per step at the end (SA, see
    ``contraction_rates``): rate log(1 + h) / h within 1e-4 (measured 1e-7).

    Fails under: a sign flip; USA for SA (rate log(1 + h e^beta) / h, 10% off); the SA
    self-term dropped (3% off). beta halved does not change the SA rate."""
    x0 = sample_sphere(32, 2, batch=64, seed=16)
    traj = simulate(x0, beta=0.1, t_max=30.0, dt=0.1)
    assert np.all(count_clusters(traj.final, tol=1e-3) == 1)
    assert clustering_density(traj.final).min() == 1.0
    np.testing.assert_allclose(contraction_rates(traj), np.log(1.1) / 0.1, rtol=1e-4)


def test_circle_usa_is_the_angle_ode():
    """Section 7: on the circle USA reads theta_i' = -(1/n) sum_j e^{beta cos(theta_i -
    theta_j)} sin(theta_i - theta_j), a gradient ascent of E_beta (Kuramoto at beta = 0).
    RK4 at dt = 1e-3 against DOP853 at rtol 1e-12: 1e-9 is ~100x the RK4 error here.

    Fails under: beta halved, logits / sqrt(d), a sign flip, a missing projection, wrong
    RK4 weights."""
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
