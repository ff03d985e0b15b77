"""The softmax shift: float32 against a float64 reference, and systems alone against batches.

SA subtracts from each logit a bound on the system's logits, or the exact row maxima where
that bound lies too far above them for the dtype (``particles._fields._MAX_GAP``); every
choice is made per system. These tests use non-definite and random Q^T K (Q = -I puts the
bound 2 beta above the row maxima of a clustered configuration) at beta around and past
the float32 limit of a shift (exponentials underflow near -87).
"""

import warnings

import numpy as np
import pytest

from particles import simulate
from particles._fields import GroupedField, make_field
from tests import naive
from tests.particles.test_kernels import _field_velocity

EPS32 = float(np.finfo(np.float32).eps)


def _clustered(rng, batch, n, d, spread=0.05):
    """Tokens within about ``spread`` of one random direction per system (batch, n, d)."""
    x = rng.standard_normal((batch, 1, d)) + spread * rng.standard_normal((batch, n, d))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _matrices(rng, case, d):
    """Q, K, V (d, d) with |Q^T K|_2 = 1, so that beta bounds the logits, and |V|_2 = 1."""
    if case == "Q=-I":
        Q, K, V = -np.eye(d), np.eye(d), rng.standard_normal((d, d))
    else:
        Q, K, V = (rng.standard_normal((d, d)) for _ in range(3))
    return Q / _norm2(Q.T @ K), K, V / _norm2(V)


def _norm2(M):
    return np.linalg.norm(M, ord=2, axis=(-2, -1))


def _velocity_tolerance(x, beta, Q, K, V, dynamics):
    """Bound on |v32 - v64| of each token, (n, 1), for unit |Q^T K|_2.

    float32 rounds BA, the products and the exponentials: each logit is off by at most
    about delta = (d + 2) eps (beta + 1), each weight by delta relative. SA's velocity, a
    weighted mean of the V x_j, then moves by at most 2 delta max_j |V x_j| (to first
    order), and its projection no more; USA's by the largest weight times as much (its
    weights e^{logit} are not normalised), plus float32's smallest normal 2^-126 per term
    for weights that underflow (there float64 keeps ~1e-40 that float32 cannot).
    """
    n, d = x.shape
    scale = np.abs(x @ V.T).max()
    if dynamics == "USA":
        scale *= np.exp(beta * (x @ Q.T @ K @ x.T)).max(axis=1, keepdims=True)
    return 2 * (d + 2) * EPS32 * (beta + 1) * scale + n * float(np.finfo(np.float32).tiny)


@pytest.mark.parametrize("beta", [29.0, 48.0, 80.0])
@pytest.mark.parametrize("case", ["Q=-I", "random"])
@pytest.mark.parametrize("d", [3, 12])
@pytest.mark.parametrize("dynamics", ["SA", "USA"])
def test_float32_velocity_matches_float64_reference(rng, dynamics, d, case, beta):
    # d = 3: the fused Numba field, d = 12: the dense torch field. Before the per-dtype
    # switch to row maxima, SA with Q = -I was off by 3e-4 relative at beta 48 and by O(1)
    # (or NaN) from beta 52 on.
    x = _clustered(rng, 2, 16, d).astype(np.float32)
    Q, K, V = _matrices(rng, case, d)
    got, _ = _field_velocity(x, beta, Q, K, V, dynamics)
    assert got.dtype == np.float32
    for b in range(2):
        x64 = x[b].astype(np.float64)
        want = naive.velocity(x64, beta, Q, K, V, dynamics)
        tol = _velocity_tolerance(x64, beta, Q, K, V, dynamics)
        assert np.all(np.abs(got[b] - want) <= tol), np.abs(got[b] - want).max()


# e^100 overflows float32: the step check warns too, rightly.
@pytest.mark.filterwarnings("ignore::particles.StepSizeWarning")
@pytest.mark.parametrize("d", [3, 12])
def test_float32_usa_overflow_is_an_error(rng, d):
    # USA has no shift: at beta = 100 its weights e^{beta <x_i, x_j>} ~ e^100 overflow
    # float32 (largest 3.4e38 = e^88.7), though not float64. The velocity must not come out
    # finite, and a run must stop with an error naming float32 and beta.
    x = _clustered(rng, 1, 8, d).astype(np.float32)
    got, _ = _field_velocity(x, 100.0, dynamics="USA")
    assert not np.all(np.isfinite(got))
    assert np.all(np.isfinite(naive.velocity(x[0].astype(np.float64), 100.0, dynamics="USA")))
    with pytest.raises(RuntimeError, match="beta = 100") as error:
        simulate(x[0], beta=100.0, t_max=0.002, dt=0.001, dynamics="USA")
    assert "float32" in str(error.value)


@pytest.mark.parametrize("beta", [48.0, 80.0])
@pytest.mark.parametrize("case", ["Q=-I", "random"])
@pytest.mark.parametrize("d", [3, 12])
def test_float32_run_follows_float64(rng, d, case, beta):
    # Three Euler steps of SA (the fused field's pair kernels for d = 3, the dense field's
    # whole steps for d = 12). Each step adds at most h times the velocity tolerance
    # (above) plus 4 eps for the renormalisation, and multiplies earlier errors by at most
    # g = 1 + 2 h |V|_2 (1 + 4 beta |Q^T K|_2) (the field's Lipschitz bound, doubled for
    # the renormalisation): after k steps and from starts eps apart, (k + 1) g^k (h tol +
    # 4 eps), 1e-5 to 3e-5 here; measured 1.3e-7 at most. Before the fix: 8e-5 off at beta
    # 48 (d = 12, Q = -I), 2e-3 at beta 80 (d = 12, random), non-finite for Q = -I at 80.
    h, k = 0.002, 3
    x0 = _clustered(rng, 1, 12, d)[0]
    Q, K, V = _matrices(rng, case, d)
    kw = dict(beta=beta, t_max=k * h, dt=h, Q=Q, K=K, V=V)
    got = simulate(x0.astype(np.float32), **kw).final
    x32 = x0.astype(np.float32).astype(np.float64)
    # float64 asks for unit rows within 1e-8: renormalised, x32 moves by at most eps.
    want = simulate(x32 / np.linalg.norm(x32, axis=1, keepdims=True), **kw).final
    growth = 1 + 2 * h * _norm2(V) * (1 + 4 * beta)
    tol = _velocity_tolerance(x32, beta, Q, K, V, "SA").max()
    assert np.abs(got - want).max() <= (k + 1) * growth**k * (h * tol + 4 * EPS32)


def test_float32_blocked_path_takes_row_maxima(rng):
    # d > 8, n >= 512 and a symmetric Q^T K: the dense field forms each pair of token
    # blocks once, with one shift per system. With Q = -I at beta 48 that shift lies 96
    # above the row maxima of a clustered system: float32 takes row maxima instead (before
    # the fix: the blocked path, weights e^{-96} below float32's normal range).
    d, n, beta = 10, 512, 48.0
    x = _clustered(rng, 1, n, d).astype(np.float32)
    Q = -np.eye(d)
    got, field = _field_velocity(x, beta, Q)
    assert field.row_max and not field._pairs
    x64 = x[0].astype(np.float64)
    want = naive.velocity(x64, beta, Q)
    tol = _velocity_tolerance(x64, beta, Q, np.eye(d), np.eye(d), "SA")
    assert np.all(np.abs(got[0] - want) <= tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [48.0, 500.0])
def test_identity_keeps_the_fast_paths(dtype, beta):
    # Q = K = I: every row holds its own logit beta, the bound, so the shift is exact at any
    # beta and dtype: the circle's symmetric kernels with whole Euler steps, and the dense
    # blocked path, stay in use.
    eye2, eye10 = np.eye(2), np.eye(10)
    fused = make_field(A=eye2, V=eye2, beta=beta, usa=False, batch=4, n=8, d=2, dtype=dtype)
    assert fused.symmetric and fused.fused_euler and not fused.row_max
    # The identity given as a matrix or as None (the default, never formed).
    for A in (eye10, None):
        dense = make_field(A=A, V=A, beta=beta, usa=False, batch=1, n=512, d=10, dtype=dtype)
        assert dense._pairs and not dense.row_max and dense._BA_T is None and dense._V_T is None


def _batch_with_one_large_system(rng, d, B=3):
    """Per-system Q, K, V: system 0 with Q = K and V = I (symmetric, the span where d >= 2 n),
    system 1 random, the last with Q^T K = -c K^T K, 200 times larger than the others."""
    Q, K, V = (rng.standard_normal((B, d, d)) for _ in range(3))
    Q[0], V[0] = K[0], np.eye(d)
    Q[-1], V[-1] = -K[-1], np.eye(d)
    scale = np.ones(B)
    scale[-1] = 200.0
    Q *= (scale / _norm2(np.swapaxes(Q, 1, 2) @ K))[:, None, None]
    return Q, K, V


# float32 on the circle would only build the d = 2 kernels once more for float32.
@pytest.mark.parametrize(
    "d, n, method, dtype",
    [
        (d, n, method, dtype)
        for d, n, method in [
            (2, 8, "euler"),
            (3, 8, "euler"),
            (3, 8, "rk4"),
            (12, 8, "euler"),
            (12, 5, "euler"),
            (12, 5, "rk4"),
        ]
        for dtype in (np.float64, np.float32)
        if (d, dtype) != (2, np.float32)
    ],
)
def test_system_alone_equals_system_in_batch(rng, d, n, method, dtype):
    # Per-system random Q, K, V at beta 2, where the last system's bound (400) is far past
    # both dtypes' limits: it takes row maxima, the others a shift of their own, and on the
    # circle system 0 the symmetric kernels. Each system gives the bits it gives alone: its
    # velocity, and 30 steps (steps large enough that a last-bit difference in the velocity
    # shows in the state; the step-size warning for system 2 is beside the point). (d, n) =
    # (12, 5) runs systems 0 and 2 in the span of their tokens (V = I, d >= 2 n; 30 steps
    # repay the basis, see ``span_pays``).
    x0 = _clustered(rng, 3, n, d, spread=1.0).astype(dtype)
    Q, K, V = _batch_with_one_large_system(rng, d)
    kw = dict(beta=2.0, t_max=3.0, dt=0.1, method=method)
    velocity, _ = _field_velocity(x0, 2.0, Q, K, V)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = simulate(x0, Q=Q, K=K, V=V, **kw).final
        for b in range(3):
            alone, _ = _field_velocity(x0[b : b + 1], 2.0, Q[b], K[b], V[b])
            np.testing.assert_array_equal(alone[0], velocity[b])
            alone = simulate(x0[b], Q=Q[b], K=K[b], V=V[b], **kw).final
            np.testing.assert_array_equal(alone, batch[b])


def test_blocked_system_alone_equals_system_in_batch(rng):
    # d > 8, n = 512: system 0 (Q = K, moderate) takes the blocked path, system 1 (Q = -K,
    # 200 times larger) row maxima; the velocity of each is the one it gets alone.
    d, n = 10, 512
    x = _clustered(rng, 2, n, d, spread=1.0)
    Q, K, V = _batch_with_one_large_system(rng, d, B=2)
    got, field = _field_velocity(x, 2.0, Q, K, V)
    assert isinstance(field, GroupedField)
    for b in range(2):
        alone, _ = _field_velocity(x[b : b + 1], 2.0, Q[b], K[b], V[b])
        np.testing.assert_array_equal(alone[0], got[b])
