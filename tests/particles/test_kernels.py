"""The Numba kernels against the NumPy references of tests/naive.py."""

import numba
import numpy as np
import pytest

from particles import _kernels
from particles._fields import make_field
from particles._vexp import vexp
from tests import naive


@numba.njit
def _vexp_array(x, out):
    for i in range(x.size):
        out[i] = vexp(x[i])


def test_vexp_matches_numpy(rng):
    x = np.concatenate([rng.uniform(-708.0, 709.78, 200_000), rng.uniform(-1, 1, 1000), [0.0]])
    out = np.empty_like(x)
    _vexp_array(x, out)
    # Degree-12 Taylor after reduction to |r| <= ln2/2: 1.8e-16 truncation plus roundings.
    np.testing.assert_allclose(out, np.exp(x), rtol=5e-16, atol=0)


def test_vexp_out_of_range():
    x = np.array([np.inf, 710.0, -np.inf, -800.0])
    out = np.empty_like(x)
    _vexp_array(x, out)
    assert out[0] == np.inf and out[1] == np.inf
    np.testing.assert_allclose(out[2:], np.exp(-708.0), rtol=5e-16)


def _field_velocity(x, beta, Q=None, K=None, V=None, dynamics="SA", project=True):
    """The kernel velocity of a batch x (B, n, d) through the Field wrapper."""
    B, n, d = x.shape
    eye = np.eye(d)
    Q = eye if Q is None else Q
    K = eye if K is None else K
    V = eye if V is None else V
    field = make_field(A=np.swapaxes(Q, -1, -2) @ K, V=V, beta=beta, usa=dynamics == "USA", batch=B, n=n, dtype=x.dtype)
    packed = field.pack(x)
    out = np.empty_like(packed)
    field.velocity(packed, project, out)
    return field.unpack(out, d, True), field


def _random_config(rng, shape):
    x = rng.standard_normal(shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("d", [2, 3, 4, 7, 9, 16])
@pytest.mark.parametrize("dynamics", ["SA", "USA"])
@pytest.mark.parametrize("project", [True, False])
def test_velocity_matches_loop_formula(rng, d, dynamics, project):
    # Theory note check 7: non-symmetric Q, K, V catch a transposed V, swapped Q and K and
    # a column softmax. USA values reach 1e5 here (e^{beta x^T A x} with Gaussian A), hence
    # the relative part of the tolerance: 1e-12 is ~1e4 ulp of slack either way.
    n, B, beta = 6, 3, 1.3
    x = _random_config(rng, (B, n, d))
    Q, K, V = (rng.standard_normal((B, d, d)) for _ in range(3))
    got, _ = _field_velocity(x, beta, Q, K, V, dynamics, project)
    for b in range(B):
        want = naive.velocity(x[b], beta, Q[b], K[b], V[b], dynamics, project)
        np.testing.assert_allclose(got[b], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 33])
def test_velocity_shared_matrices_and_token_counts(rng, n):
    d, B, beta = 3, 5, 0.7
    x = _random_config(rng, (B, n, d))
    Q, K, V = (rng.standard_normal((d, d)) for _ in range(3))
    got, _ = _field_velocity(x, beta, Q, K, V)
    for b in range(B):
        np.testing.assert_allclose(got[b], naive.velocity(x[b], beta, Q, K, V), atol=1e-12)


@pytest.mark.parametrize("d", [3, 12])
def test_large_beta_uses_exact_row_maxima(rng, d):
    # With Q = -I at beta = 400 the bound shift could underflow (a gap of 2 beta between
    # the bound and the row maxima), so both fields switch to row maxima.
    x = _random_config(rng, (2, 8, d))
    got, field = _field_velocity(x, 400.0, Q=-np.eye(d))
    assert field.row_max
    for b in range(2):
        np.testing.assert_allclose(got[b], naive.velocity(x[b], 400.0, Q=-np.eye(d)), atol=1e-12)


def test_chunked_tasks_match_whole_rows(rng):
    # A batch of one splits each system's tokens over several tasks.
    x = _random_config(rng, (1, 40, 3))
    Q, K = (rng.standard_normal((3, 3)) for _ in range(2))
    got, field = _field_velocity(x, 2.0, Q, K)
    assert not field.symmetric and field.chunk < 40
    np.testing.assert_allclose(got[0], naive.velocity(x[0], 2.0, Q, K), atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 5, 32, 33, 300])
@pytest.mark.parametrize("dynamics", ["SA", "USA"])
def test_symmetric_kernel_matches_loop_formula(rng, n, dynamics):
    # Q = K makes Q^T K symmetric: on the circle, one exponential per unordered pair, walked
    # by offsets (n = 300 splits each system's offsets into parts; odd and even n differ at
    # n / 2).
    B, d, beta = 2, 2, 0.9
    x = _random_config(rng, (B, n, d))
    Q = rng.standard_normal((B, d, d))
    V = rng.standard_normal((B, d, d))
    project = n % 2 == 0
    got, field = _field_velocity(x, beta, Q, Q, V, dynamics, project)
    assert field.symmetric and (field.n_parts > 1) == (n == 300)
    for b in range(B):
        want = naive.velocity(x[b], beta, Q[b], Q[b], V[b], dynamics, project)
        np.testing.assert_allclose(got[b], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 5, 32, 33])
@pytest.mark.parametrize("dynamics", ["SA", "USA"])
def test_fused_euler_matches_loop_formula(rng, n, dynamics):
    # Whole Euler steps in one kernel (symmetric BA on the circle): per-system Q = K and V,
    # 7 steps against the NumPy scheme. Errors grow by at most e^{7 h L} over the steps.
    B, d, beta, h = 3, 2, 1.1, 0.1
    x = _random_config(rng, (B, n, d))
    Q = rng.standard_normal((B, d, d))
    V = rng.standard_normal((B, d, d))
    field = make_field(
        A=np.swapaxes(Q, 1, 2) @ Q, V=V, beta=beta, usa=dynamics == "USA", batch=B, n=n, dtype=np.float64
    )
    assert field.fused_euler
    packed = field.pack(x)
    assert field.euler(packed, h, 7) == 7
    got = field.unpack(packed, d, True)
    for b in range(B):
        want = naive.euler(x[b], beta, h, 7, Q=Q[b], K=Q[b], V=V[b], dynamics=dynamics)
        np.testing.assert_allclose(got[b], want, rtol=1e-12, atol=1e-12)


def test_fused_euler_reports_each_systems_first_non_finite_step(rng):
    # USA weights e^{<x_i, BA x_i>} overflow float64 once the logit passes 709.78: with
    # BA = 800 I from the start (system 1), with BA = I never (system 0).
    x = _random_config(rng, (2, 6, 2))
    A = np.stack([np.eye(2), 800.0 * np.eye(2)])
    field = make_field(A=A, V=np.eye(2), beta=1.0, usa=True, batch=2, n=6, dtype=np.float64)
    assert field.euler(field.pack(x), 0.1, 4) == 0
    np.testing.assert_array_equal(field.completed, [4, 0])


@pytest.mark.parametrize("dynamics, n", [("SA", 520), ("USA", 513)])
def test_dense_symmetric_blocks_match_loop_formula(rng, dynamics, n):
    # d > 8 with a symmetric BA and n >= 2 blocks: each block pair of logits formed once.
    d, beta = 10, 0.4
    x = _random_config(rng, (1, n, d))
    Q, V = rng.standard_normal((d, d)) / d, rng.standard_normal((d, d))
    got, field = _field_velocity(x, beta, Q, Q, V, dynamics, project=n % 2 == 0)
    assert field._pairs
    want = naive.velocity(x[0], beta, Q, Q, V, dynamics, project=n % 2 == 0)
    np.testing.assert_allclose(got[0], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["general SA", "general USA", "row maxima", "blocks", "span"])
def test_dense_euler_matches_loop_formula(rng, case):
    # d > 8: whole Euler steps in torch, x + h S / z in one pass, on each of its paths:
    # bound shift, USA, exact row maxima (beta = 400), symmetric blocks (n = 520), and the
    # span of x0 (V = I, d >= 2 n). 3 steps against the NumPy scheme.
    n, d, beta, h = {"blocks": (520, 10, 0.4, 0.05), "span": (5, 12, 1.5, 0.1), "row maxima": (6, 12, 400.0, 0.01)}.get(
        case, (6, 12, 1.3, 0.1)
    )
    B = 1 if case == "blocks" else 2
    x = _random_config(rng, (B, n, d))
    Q = rng.standard_normal((d, d)) / np.sqrt(d)
    K = Q if case in ("blocks", "span", "row maxima") else rng.standard_normal((d, d)) / np.sqrt(d)
    V = np.eye(d) if case == "span" else rng.standard_normal((d, d))
    dynamics = "USA" if case == "general USA" else "SA"
    field = make_field(A=Q.T @ K, V=V, beta=beta, usa=dynamics == "USA", batch=B, n=n, dtype=np.float64, x0=x)
    assert field.fused_euler
    assert field._pairs == (case == "blocks")
    assert field.row_max == (case == "row maxima")
    assert (field.basis is not None) == (case == "span")
    packed = field.pack(x)
    assert field.euler(packed, h, 3) == 3
    got = field.unpack(packed, d, True)
    for b in range(B):
        want = naive.euler(x[b], beta, h, 3, Q=Q, K=K, V=V, dynamics=dynamics)
        np.testing.assert_allclose(got[b], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dynamics", ["SA", "USA"])
def test_dense_float32_euler_follows_float64_reference(rng, dynamics):
    # float32 SA takes its weights from torch.softmax, USA from exp and 1 / n: 3 steps
    # against the NumPy scheme in float64, to float32 accuracy (a few ulps of the O(1)
    # coordinates per step; 1e-5 leaves a margin of about 20).
    n, d, beta, h = 6, 12, 1.3, 0.1
    x = _random_config(rng, (2, n, d))
    Q, K, V = (rng.standard_normal((d, d)) / np.sqrt(d) for _ in range(3))
    field = make_field(A=Q.T @ K, V=V, beta=beta, usa=dynamics == "USA", batch=2, n=n, dtype=np.float32)
    packed = field.pack(x.astype(np.float32))
    assert field.euler(packed, h, 3) == 3
    got = field.unpack(packed, d, True)
    for b in range(2):
        want = naive.euler(x[b], beta, h, 3, Q=Q, K=K, V=V, dynamics=dynamics)
        np.testing.assert_allclose(got[b], want, rtol=0, atol=1e-5)


def test_retract_reports_non_finite():
    x = np.zeros((1, 2, 3))
    x[0, 0] = 1.0
    v = np.full_like(x, np.inf)
    assert not _kernels.retract(x, v, 0.1, x.copy(), np.empty((1, 3)))


def _stepwise_euler(field, x, h, n_steps):
    """Euler steps launch by launch: the field's velocity, then the retraction."""
    v = np.empty_like(x)
    for step in range(n_steps):
        field.velocity(x, False, v)
        if not field.retract(x, v, h, x):
            return step
    return n_steps


# Any interaction on the fused fields, 16 systems (whole systems per task): the circle, d = 3
# (USA), d = 5 (coordinates past the first 4), row maxima (A = -I at beta 400: gap 800), and
# n = 130, whose rows come in chunks of 63.
@pytest.mark.parametrize(
    "n, d, dynamics, beta, case",
    [(9, 2, "SA", 1.5, "random"), (7, 3, "USA", 1.0, "random"), (6, 5, "SA", 2.0, "random"),
     (8, 3, "SA", 400.0, "minus_identity"), (130, 3, "SA", 1.0, "random")],
)  # fmt: skip
def test_fused_euler_any_interaction_is_the_stepwise_path_bit_for_bit(rng, n, d, dynamics, beta, case):
    from particles._threads import thread_limit

    B, h, steps = 16, 0.01 if beta > 100 else 0.1, 5
    x = _random_config(rng, (B, n, d))
    A = -np.eye(d) if case == "minus_identity" else rng.standard_normal((B, d, d))
    V = rng.standard_normal((B, d, d))
    field = make_field(A=A, V=V, beta=beta, usa=dynamics == "USA", batch=B, n=n, dtype=np.float64)
    assert field.fused_euler and not field.symmetric and field.row_max == (case == "minus_identity")
    expected = field.pack(x)
    assert _stepwise_euler(field, expected, h, steps) == steps
    for threads in (1, 2):
        packed = field.pack(x)
        with thread_limit(min(threads, numba.config.NUMBA_NUM_THREADS)):
            assert field.euler(packed, h, steps) == steps
        np.testing.assert_array_equal(packed, expected)
    # And the scheme itself, against the NumPy loop formula (A = Q^T K with Q = A^T, K = I).
    got = field.unpack(expected, d, True)
    for b in (0, B - 1):
        Ab = A if A.ndim == 2 else A[b]
        want = naive.euler(x[b], beta, h, steps, Q=Ab.T, K=np.eye(d), V=V[b], dynamics=dynamics)
        np.testing.assert_allclose(got[b], want, rtol=1e-11, atol=1e-11)


def test_fused_euler_any_interaction_reports_each_systems_first_non_finite_step(rng):
    # USA with BA = 800 A_1 (system 1, a non-symmetric A_1 with x^T A_1 x near 1) overflows;
    # the others (BA small) never do.
    B, n = 16, 6
    x = _random_config(rng, (B, n, 3))
    A = 0.01 * rng.standard_normal((B, 3, 3))
    A[1] = 800.0 * (np.eye(3) + 0.01 * rng.standard_normal((3, 3)))
    field = make_field(A=A, V=np.eye(3), beta=1.0, usa=True, batch=B, n=n, dtype=np.float64)
    assert field.fused_euler and not field.symmetric
    assert field.euler(field.pack(x), 0.1, 4) == 0
    np.testing.assert_array_equal(field.completed, [4] + [0] + [4] * (B - 2))


def test_dense_euler_reports_the_first_non_finite_step():
    # The dense field checks finiteness once per stretch and replays a failed one: it must
    # still name the first bad step (here the third of five, poisoned in both passes).
    n, d, n_steps, bad = 6, 12, 5, 2
    field = make_field(A=None, V=None, beta=1.0, usa=False, batch=2, n=n, d=d, dtype=np.float64)
    sums, calls = field._sums, []

    def poisoned(xt):
        S, z = sums(xt)
        calls.append(None)
        return (S * np.nan, z) if (len(calls) - 1) % n_steps == bad else (S, z)

    field._sums = poisoned
    x = field.pack(_random_config(np.random.default_rng(0), (2, n, d)))
    assert field.euler(x, 0.1, n_steps) == bad
    assert len(calls) == n_steps + bad + 1
