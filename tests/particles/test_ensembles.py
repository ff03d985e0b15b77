"""particles.ensembles.draw against the authors' conventions (Geshkovski et al., 2023,
phase-diagrams.py; theory note, section 2): logits beta x_i^T B x_j and values acting on
row vectors, v -> v V. One Euler step of this package, through ``simulate`` and through the
phase diagram's field, against the authors' step written here in numpy."""

import numpy as np
import pytest
from scipy import stats

from particles import simulate
from particles._fields import make_field
from particles._steppers import Euler
from particles.ensembles import INTERACTIONS, VALUES, draw

# The authors' step h = 0.1. These tests are about the discrete scheme itself, one step of
# it, so the warning that the step is too large for the steps to follow the ODE is moot.
BETA, H, N = 1.3, 0.1, 5
pytestmark = pytest.mark.filterwarnings("ignore:dt = .* is too large for method 'euler'")


def authors_matrices(interaction, value, d, rng, size):
    """(B, V) in the authors' convention, as their generate_KQV builds them (randomKQ =
    0-3, randomV = 0-3), drawing from rng in their order: B first, then V."""
    shape = (d, d) if size is None else (size, d, d)
    transpose = lambda M: np.swapaxes(M, -1, -2)  # noqa: E731
    if interaction == "gaussian":
        first = rng.standard_normal(shape)
        B = first @ rng.standard_normal(shape) / np.sqrt(d)
        norm_v = np.sqrt(d)
    elif interaction == "wigner_diag":
        # Their "wrong Wigner": divide by sqrt(2) off the diagonal and by 2 on it.
        G = rng.standard_normal(shape)
        norma = np.eye(d) * (2 - np.sqrt(2)) + np.ones(d) * np.sqrt(2)
        B = (G + transpose(G)) / norma
        norm_v = np.sqrt(d)
    elif interaction == "goe":
        G = rng.standard_normal(shape)
        B = (G + transpose(G)) / np.sqrt(2)
        norm_v = np.sqrt(d + 1)
    else:
        B = np.broadcast_to(np.eye(d), shape)
        norm_v = 1.0
    if value == "gaussian":
        G = rng.standard_normal(shape)
        V = G @ transpose(G) / np.sqrt(d)
    elif value == "plus_qk":
        V = B / norm_v
    elif value == "minus_qk":
        V = -B / norm_v
    else:
        V = np.broadcast_to(np.eye(d), shape)
    return B, V


def authors_step(x, B, V, beta, h, usa):
    """Their step_1: logits x_i^T B x_j, weights (row softmax or e^logit / n), then
    x_i <- normalize(x_i + h (sum_j w_ij x_j) V) with the row vector times V."""
    B = np.broadcast_to(B, (x.shape[0],) + B.shape[-2:])
    V = np.broadcast_to(V, B.shape)
    logits = beta * np.einsum("bid,bde,bje->bij", x, B, x)
    if usa:
        weights = np.exp(logits) / x.shape[1]
    else:
        weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
        weights /= weights.sum(axis=-1, keepdims=True)
    moved = x + h * np.einsum("bij,bjd,bde->bie", weights, x, V)
    return moved / np.linalg.norm(moved, axis=-1, keepdims=True)


def unit_rows(rng, batch, n, d):
    x = rng.standard_normal((batch, n, d))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def package_steps(x, A, V, usa):
    """One Euler step of simulate (Q = I, K = A: logits <x_i, A x_j>) and one of the phase
    diagram's field (as beta_statistics builds it)."""
    batch, n, d = x.shape
    K = np.broadcast_to(A, (batch, d, d)).copy()
    via_simulate = simulate(
        x,
        beta=BETA,
        t_max=H,
        dt=H,
        dynamics="USA" if usa else "SA",
        Q=np.broadcast_to(np.eye(d), K.shape).copy(),
        K=K,
        V=np.broadcast_to(V, K.shape).copy(),
    ).final
    field = make_field(A=A, V=V, beta=BETA, usa=usa, batch=batch, n=n, dtype=np.float64)
    packed = field.pack(x)
    assert Euler(field, packed).advance(packed, H, 1) == 1
    return via_simulate, field.unpack(packed, d, True)


# One step moves tokens by ~h with entries O(1): float64 rounding is ~1e-16, while a
# transposed B or V, or their order swapped, moves them by 1e-3 or more (gaussian B and
# +-B / c values are not symmetric).
STEP_TOL = 1e-12


def _check_one_step(interaction, value, d, usa, size, seed):
    batch = 4 if size is None else size
    drawn = draw(interaction, value, d, np.random.default_rng(seed), size=size)
    A, V = drawn.A, drawn.V
    B, V_theirs = authors_matrices(interaction, value, d, np.random.default_rng(seed), size)
    x = unit_rows(np.random.default_rng(seed + 1), batch, N, d)
    expected = authors_step(x, B, V_theirs, BETA, H, usa)
    for got in package_steps(x, A, V, usa):
        np.testing.assert_allclose(got, expected, rtol=0, atol=STEP_TOL)


@pytest.mark.parametrize("usa", [False, True], ids=["SA", "USA"])
@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("interaction", INTERACTIONS)
def test_one_step_is_the_authors_step(interaction, value, usa):
    # One draw per system (the phase diagram's default).
    _check_one_step(interaction, value, 3, usa, size=4, seed=7)


@pytest.mark.parametrize("usa", [False, True], ids=["SA", "USA"])
def test_one_step_with_one_draw_shared_by_the_batch(usa):
    _check_one_step("gaussian", "plus_qk", 3, usa, size=None, seed=7)


@pytest.mark.parametrize("value", ["gaussian", "plus_qk", "minus_qk"])
def test_one_step_is_the_authors_step_dense(value):
    # d > 8 takes the dense (torch) field instead of the fused kernels.
    _check_one_step("gaussian", value, 10, False, size=2, seed=9)


@pytest.mark.parametrize("size", [None, 3])
def test_drawn_q_k_v_run_the_authors_step(size):
    # What the README shows: the drawn matrices passed to simulate as they come.
    m = draw("gaussian", "minus_qk", 3, np.random.default_rng(5), size=size)
    B, V_theirs = authors_matrices("gaussian", "minus_qk", 3, np.random.default_rng(5), size)
    np.testing.assert_array_equal(m.Q, np.eye(3))
    np.testing.assert_array_equal(m.K, B)
    np.testing.assert_array_equal(m.A, B)
    np.testing.assert_array_equal(m.V, np.swapaxes(V_theirs, -1, -2))
    x = unit_rows(np.random.default_rng(6), 3, N, 3)
    got = simulate(x, beta=BETA, t_max=H, dt=H, Q=m.Q, K=m.K, V=m.V).final
    np.testing.assert_allclose(got, authors_step(x, B, V_theirs, BETA, H, False), rtol=0, atol=STEP_TOL)


def test_the_cases_are_not_symmetric():
    # The step test can only see a transpose where B or V is not symmetric.
    drawn = draw("gaussian", "minus_qk", 3, np.random.default_rng(0))
    A, V = drawn.A, drawn.V
    assert np.abs(A - A.T).max() > 0.1 and np.abs(V - V.T).max() > 0.1


# Moments over M independent draws. Entries of GOE and Wigner matrices are exactly normal:
# with mean 0 known, sum x^2 / sigma^2 is chi-square with as many degrees of freedom as
# entries. The others use the normal approximation to a mean of M i.i.d. terms with a
# sample standard deviation. Each check fails falsely with probability <= 1e-5, the 9
# checks together <= 1e-4.
M, D = 4000, 3
TWO_SIDED = 1e-5
Z = stats.norm.isf(TWO_SIDED / 2)


def _chi2_variance_ok(entries, variance):
    total = np.sum(entries**2) / variance
    return stats.chi2.ppf(TWO_SIDED / 2, entries.size) < total < stats.chi2.isf(TWO_SIDED / 2, entries.size)


def _mean_ok(samples, mean):
    stderr = samples.std(ddof=1) / np.sqrt(samples.size)
    return abs(samples.mean() - mean) < Z * stderr


def _parts(matrices):
    diag = np.diagonal(matrices, axis1=-2, axis2=-1)
    upper = matrices[:, *np.triu_indices(matrices.shape[-1], 1)]
    return diag, upper


@pytest.mark.parametrize("interaction, diagonal_variance", [("goe", 2.0), ("wigner_diag", 1.0)])
def test_symmetric_ensembles_moments(interaction, diagonal_variance):
    """GOE (G + G^T) / sqrt(2): diagonal variance 2, off-diagonal 1; the authors' Wigner
    keeps G_ii (variance 1) on the diagonal. Both symmetric. False-failure rate 2e-5."""
    A = draw(interaction, "identity", D, np.random.default_rng(11), size=M).A
    np.testing.assert_array_equal(A, np.swapaxes(A, 1, 2))
    diag, upper = _parts(A)
    assert _chi2_variance_ok(diag, diagonal_variance)
    assert _chi2_variance_ok(upper, 1.0)


def test_gaussian_ensembles_moments():
    """B = G_1 G_2 / sqrt(d): entries of mean 0 and variance 1. V = G G^T / sqrt(d): diagonal
    mean sqrt(d) and variance 2, off-diagonal variance 1. False-failure rate 5e-5."""
    drawn = draw("gaussian", "gaussian", D, np.random.default_rng(12), size=M)
    A, V = drawn.A, drawn.V
    entries = A.reshape(M, -1)
    assert _mean_ok(entries[:, 0], 0.0)
    assert _mean_ok((entries**2).mean(axis=1), 1.0)
    np.testing.assert_array_equal(V, np.swapaxes(V, 1, 2))
    diag, upper = _parts(V)
    assert _mean_ok(diag.mean(axis=1), np.sqrt(D))
    assert _mean_ok(((diag - np.sqrt(D)) ** 2).mean(axis=1), 2.0)
    assert _mean_ok((upper**2).mean(axis=1), 1.0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(interaction="wishart"), ValueError, "interaction must be one of"),
        (dict(value="orthogonal"), ValueError, "value must be one of"),
        (dict(d=0), ValueError, "d must be >= 1, got 0"),
        (dict(d=2.0), TypeError, "d must be an integer"),
        (dict(size=0), ValueError, "size must be >= 1, got 0"),
        (dict(rng=3), TypeError, "rng must be a numpy.random.Generator, got int"),
    ],
)
def test_bad_input(kwargs, error, match):
    args = dict(interaction="goe", value="gaussian", d=3, rng=np.random.default_rng(0))
    with pytest.raises(error, match=match):
        draw(**{**args, **kwargs})
