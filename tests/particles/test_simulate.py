"""simulate(): exact reductions, orders of convergence, invariances, reproducibility, errors."""

import numba
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from particles import sample_sphere, simulate
from particles._simulate import _field
from tests import naive

# For tests whose large steps are the point: they compare with a NumPy transcription of the
# same steps, or test what such a step does, not the ODE.
big_step_on_purpose = pytest.mark.filterwarnings("ignore::particles.StepSizeWarning")


def _two_tokens(c0, d=3):
    x = np.zeros((2, d))
    x[0, 0] = 1.0
    x[1, 0], x[1, 1] = c0, np.sqrt(1 - c0**2)
    return x


def _c_exact(c0, beta, dynamics, ts):
    """<x_1, x_2> of two tokens (Q = K = V = I): dc/dt = 2 w (1 - c^2) (theory note, 3)."""

    def rhs(t, c):
        w = np.exp(beta * c) / (np.exp(beta) + np.exp(beta * c)) if dynamics == "SA" else np.exp(beta * c) / 2
        return 2 * w * (1 - c**2)

    sol = solve_ivp(rhs, (0, ts[-1]), [c0], t_eval=ts, rtol=1e-12, atol=1e-14, method="DOP853")
    return sol.y[0]


@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
@pytest.mark.parametrize("dynamics", ["SA", "USA"])
def test_two_tokens_reduce_to_scalar_ode(beta, dynamics):
    # Theory note check 1: |c - c_ode| < 1e-8 for t <= 10 with RK4 at dt = 1e-3 (measured
    # there: 1.7e-9 for USA at beta = 4; a sign error shows as 0.07, an SA/USA swap at
    # beta >= 1 as 0.7).
    traj = simulate(_two_tokens(-0.5), beta=beta, t_max=10.0, dt=1e-3, dynamics=dynamics, method="rk4", save_every=100)
    c = np.einsum("td,td->t", traj.xs[:, 0], traj.xs[:, 1])
    np.testing.assert_allclose(c, _c_exact(-0.5, beta, dynamics, traj.ts), rtol=0, atol=1e-8)
    if beta == 0.0:
        # At beta = 0, SA = USA and c(t) = tanh(t + artanh c(0)) exactly.
        np.testing.assert_allclose(c, np.tanh(traj.ts + np.arctanh(-0.5)), rtol=0, atol=1e-8)


def test_two_tokens_dopri5():
    traj = simulate(_two_tokens(-0.5), beta=4.0, t_max=10.0, dt=0.5, method="dopri5", rtol=1e-11, atol=1e-13)
    c = np.einsum("td,td->t", traj.xs[:, 0], traj.xs[:, 1])
    np.testing.assert_allclose(c, _c_exact(-0.5, 4.0, "SA", traj.ts), rtol=0, atol=1e-8)


@pytest.fixture
def general_problem(rng):
    """n = 8, d = 3, random non-symmetric Q, K, V: no special structure to hide errors."""
    d = 3
    Q, K, V = (rng.standard_normal((d, d)) / np.sqrt(d) for _ in range(3))
    x0 = sample_sphere(8, d, seed=1)
    return x0, dict(beta=1.0, Q=Q, K=K, V=V)


def _fitted_order(errors, dts):
    return np.polyfit(np.log(dts), np.log(errors), 1)[0]


def test_euler_is_first_order(general_problem):
    x0, kw = general_problem
    ref = simulate(x0, t_max=1.0, dt=0.1, method="dopri5", rtol=1e-12, atol=1e-14, **kw).final
    dts = np.array([0.02, 0.01, 0.005, 0.0025])
    errors = [np.abs(simulate(x0, t_max=1.0, dt=h, **kw).final - ref).max() for h in dts]
    assert 0.9 < _fitted_order(errors, dts) < 1.1


def test_rk4_is_fourth_order(general_problem):
    x0, kw = general_problem
    ref = simulate(x0, t_max=1.0, dt=0.1, method="dopri5", rtol=1e-13, atol=1e-15, **kw).final
    dts = np.array([0.2, 0.1, 0.05, 0.025])
    errors = [np.abs(simulate(x0, t_max=1.0, dt=h, method="rk4", **kw).final - ref).max() for h in dts]
    assert 3.7 < _fitted_order(errors, dts) < 4.3


def test_dopri5_error_follows_tolerance(general_problem):
    x0, kw = general_problem
    ref = simulate(x0, t_max=1.0, dt=1e-3, method="rk4", **kw).final  # error ~1e-13
    errors = []
    for tol in (1e-4, 1e-6, 1e-8):
        final = simulate(x0, t_max=1.0, dt=1.0, method="dopri5", rtol=tol, atol=tol, **kw).final
        errors.append(np.abs(final - ref).max())
        assert errors[-1] < 10 * tol
    assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize("method, naive_stepper", [("euler", naive.euler), ("rk4", naive.rk4)])
def test_fixed_step_runs_match_numpy_reference(general_problem, method, naive_stepper):
    x0, kw = general_problem
    got = simulate(x0, t_max=0.5, dt=0.05, method=method, **kw).final
    want = naive_stepper(x0, kw["beta"], 0.05, 10, Q=kw["Q"], K=kw["K"], V=kw["V"])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@big_step_on_purpose
@pytest.mark.parametrize("method, naive_stepper", [("euler", naive.euler), ("rk4", naive.rk4)])
@pytest.mark.parametrize("dynamics", ["SA", "USA"])
def test_runs_in_the_span_of_the_tokens_match_numpy_reference(rng, method, naive_stepper, dynamics):
    # d >= 2n with V = I: simulate integrates in an orthonormal basis of the span of x0,
    # where the run is long enough to repay the basis (20 steps; not 1).
    n, d = 5, 24
    x0 = sample_sphere(n, d, batch=2, seed=2)
    K = rng.standard_normal((d, d)) / np.sqrt(d)
    traj = simulate(x0, beta=1.5, t_max=2.0, dt=0.1, dynamics=dynamics, method=method, K=K, save_every=5)
    assert _field(x0, traj.params, steps=20).basis.shape == (2, d, n)
    assert _field(x0, traj.params, steps=1).basis is None
    for b in range(2):
        want = naive_stepper(x0[b], 1.5, 0.1, 20, K=K, dynamics=dynamics)
        np.testing.assert_allclose(traj.final[b], want, atol=1e-12)


def test_last_step_is_shortened_to_end_at_t_max(general_problem):
    x0, kw = general_problem
    traj = simulate(x0, t_max=1.05, dt=0.1, save_every=4, **kw)
    np.testing.assert_array_equal(traj.ts, [0.0, 0.4, 0.8, 1.05])
    want = naive.euler(
        naive.euler(x0, 1.0, 0.1, 10, Q=kw["Q"], K=kw["K"], V=kw["V"]), 1.0, 0.05, 1, Q=kw["Q"], K=kw["K"], V=kw["V"]
    )
    np.testing.assert_allclose(traj.final, want, atol=1e-12)


def test_saved_times():
    x0 = sample_sphere(4, 2, seed=0)
    traj = simulate(x0, beta=1.0, t_max=1.0, dt=0.1, save_every=3)
    np.testing.assert_allclose(traj.ts, [0.0, 0.3, 0.6, 0.9, 1.0], rtol=0, atol=1e-15)
    assert traj.ts[-1] == 1.0 and traj.xs.shape == (5, 4, 2)
    np.testing.assert_array_equal(traj.xs[0], x0)
    # 0.3 / 0.1 is 2.9999999999999996 in floating point: still three equal steps.
    assert len(simulate(x0, beta=1.0, t_max=0.3, dt=0.1).ts) == 4
    assert simulate(x0, beta=1.0, t_max=0.0, dt=0.1).xs.shape == (1, 4, 2)


@pytest.mark.parametrize("method", ["euler", "rk4", "dopri5"])
def test_tokens_stay_on_sphere(method):
    x0 = sample_sphere(16, 3, batch=4, seed=2)
    traj = simulate(x0, beta=2.0, t_max=5.0, dt=0.05, method=method)
    assert np.abs(np.linalg.norm(traj.xs, axis=-1) - 1).max() < 1e-12


def test_permutation_equivariance(general_problem, rng):
    x0, kw = general_problem
    perm = rng.permutation(len(x0))
    a = simulate(x0, t_max=2.0, dt=0.05, **kw).final
    b = simulate(x0[perm], t_max=2.0, dt=0.05, **kw).final
    np.testing.assert_allclose(b, a[perm], rtol=0, atol=1e-12)


@pytest.mark.parametrize("dynamics", ["SA", "USA"])
def test_rotation_equivariance(rng, dynamics):
    x0 = sample_sphere(12, 4, seed=3)
    R, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    a = simulate(x0, beta=2.0, t_max=2.0, dt=0.05, dynamics=dynamics, method="rk4").final
    b = simulate(x0 @ R.T, beta=2.0, t_max=2.0, dt=0.05, dynamics=dynamics, method="rk4").final
    np.testing.assert_allclose(b, a @ R.T, rtol=0, atol=1e-12)


@big_step_on_purpose
def test_per_system_matrices_match_separate_runs(rng):
    d = 3
    x0 = sample_sphere(6, d, batch=3, seed=4)
    Q, K, V = (rng.standard_normal((3, d, d)) for _ in range(3))
    batched = simulate(x0, beta=1.0, t_max=1.0, dt=0.1, Q=Q, K=K, V=V).final
    for b in range(3):
        alone = simulate(x0[b], beta=1.0, t_max=1.0, dt=0.1, Q=Q[b], K=K[b], V=V[b]).final
        np.testing.assert_array_equal(batched[b], alone)


# Fused Euler steps on the circle, the Numba pair kernels, the dense torch field, and the
# dense field in the span of x0 (d >= 2 n; its QR depends on the threads unless pinned).
@pytest.mark.parametrize("n, d, batch", [(40, 2, 20), (40, 3, 20), (40, 12, 20), (100, 512, 8)])
def test_bit_for_bit_whatever_the_threads_and_batch(n, d, batch):
    x0 = sample_sphere(n, d, batch=batch, seed=5)
    kw = dict(beta=3.0, t_max=1.0, dt=0.05)
    runs = []
    for threads in (1, 2):
        runs.append(simulate(x0, threads=min(threads, numba.config.NUMBA_NUM_THREADS), **kw).final)
    np.testing.assert_array_equal(runs[0], runs[1])
    # A system gives the same bits alone as in a batch (different task chunking).
    np.testing.assert_array_equal(simulate(x0[7], **kw).final, runs[0][7])


def test_float32_on_request():
    x0 = sample_sphere(8, 3, batch=2, seed=6)
    traj32 = simulate(x0.astype(np.float32), beta=2.0, t_max=1.0, dt=0.1)
    assert traj32.xs.dtype == np.float32 and traj32.params.dtype == "float32"
    traj64 = simulate(x0, beta=2.0, t_max=1.0, dt=0.1)
    np.testing.assert_allclose(traj32.final, traj64.final, atol=1e-5)


@big_step_on_purpose
@pytest.mark.parametrize("d", [2, 10])
def test_usa_overflow_raises_with_beta_time_and_step(d):
    x0 = sample_sphere(4, d, seed=7)
    with pytest.raises(RuntimeError, match=r"non-finite at t = 0.1 \(step 1\) with beta = 800"):
        simulate(x0, beta=800.0, t_max=1.0, dt=0.1, dynamics="USA")


@big_step_on_purpose
def test_sa_at_large_beta_is_finite():
    x0 = sample_sphere(16, 3, seed=8)
    traj = simulate(x0, beta=200.0, t_max=1.0, dt=0.01)
    assert np.all(np.isfinite(traj.xs))


def test_params_describe_the_run(general_problem):
    x0, kw = general_problem
    p = simulate(x0, t_max=0.2, dt=0.1, method="rk4", **kw).params
    assert (p.beta, p.t_max, p.dt, p.method, p.dynamics) == (1.0, 0.2, 0.1, "rk4", "SA")
    np.testing.assert_array_equal(p.Q, kw["Q"])


GOOD = dict(beta=1.0, t_max=1.0, dt=0.1)


@pytest.mark.parametrize(
    "x0, kwargs, error, match",
    [
        (np.ones((4, 3)), {}, ValueError, "unit norm"),
        (np.ones(3) / np.sqrt(3), {}, ValueError, "shape"),
        (np.ones((1, 1, 4, 2)) / np.sqrt(2), {}, ValueError, "shape"),
        (np.ones((4, 1)), {}, ValueError, "d >= 2"),
        (np.ones((0, 3)), {}, ValueError, "n >= 1"),
        (np.eye(3, dtype=np.int64), {}, TypeError, "dtype int64"),
        (np.full((2, 2), np.nan), {}, ValueError, "finite"),
        (None, dict(dt=0.0), ValueError, "dt must be > 0"),
        (None, dict(dt=-1.0), ValueError, "dt must be > 0"),
        (None, dict(t_max=-1.0), ValueError, "t_max must be >= 0"),
        (None, dict(beta=-1.0), ValueError, "beta must be >= 0"),
        (None, dict(beta="1"), TypeError, "beta must be a real number"),
        (None, dict(beta=np.inf), ValueError, "beta must be finite"),
        (None, dict(dynamics="softmax"), ValueError, "dynamics must be one of"),
        (None, dict(method="rk45"), ValueError, "method must be one of"),
        (None, dict(save_every=0), ValueError, "save_every must be >= 1"),
        (None, dict(Q=np.eye(2)), ValueError, r"Q must have shape \(3, 3\)"),
        (None, dict(K=np.ones((3, 3, 3))), ValueError, r"K must have shape \(3, 3\), got"),
        (None, dict(V=np.full((3, 3), np.inf)), ValueError, "V must be finite"),
    ],
)
def test_bad_input(x0, kwargs, error, match):
    x0 = np.eye(3) if x0 is None else x0
    with pytest.raises(error, match=match):
        simulate(x0, **{**GOOD, **kwargs})


def test_bad_batched_matrices():
    x0 = sample_sphere(4, 3, batch=2, seed=0)
    with pytest.raises(ValueError, match=r"Q must have shape \(3, 3\) or \(2, 3, 3\)"):
        simulate(x0, Q=np.ones((5, 3, 3)), **GOOD)


@pytest.mark.parametrize("d", [3, 12])
def test_single_token_frames_are_copies(d):
    """One token under a rotation V (beta = 0: x' = P_x V x) moves along a great circle;
    every saved frame must be its own state (a view of the working state once made all
    frames equal to the last)."""
    R = np.eye(d)
    R[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]
    x0 = np.zeros((1, d))
    x0[0, 0] = 1.0
    traj = simulate(x0, beta=0.0, t_max=0.2, dt=0.1, V=R, method="rk4")
    # With V x orthogonal to x, the token rotates at unit speed: angle t at time t (RK4
    # error ~1e-8 at dt = 0.1).
    np.testing.assert_allclose(traj.xs[:, 0, 0], np.cos(traj.ts), atol=1e-6)
    np.testing.assert_allclose(traj.xs[:, 0, 1], np.sin(traj.ts), atol=1e-6)
