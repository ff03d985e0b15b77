"""The dense field's blocked paths (d > 8, n >= 512): symmetric logits by block pairs, and
key blocks streamed with running row maxima as flash attention does, against the same
field with one (n x n) logits matrix and against plain NumPy."""

import numpy as np
import pytest

from particles import _dense_field
from particles._fields import make_field

# n = 1030 in five blocks of 256 tokens, the last of 6, so that every block edge is
# crossed; tiles of 2^16 logits make the query tiles and row panels one block each (the
# default tile, in the Euler test, makes them all rows and 512 rows).
N, D = 1030, 10
SMALL_TILE = 2**16
# Each case: (dynamics, how Q^T K is drawn, beta) and the path it must take. "-I" at beta
# 400 puts the shift 800 above the row maxima: past float64's gap of 600, so row maxima.
CASES = {
    "pairs SA": ("SA", "symmetric", 1.5),
    "pairs USA": ("USA", "symmetric", 0.5),
    "streamed SA": ("SA", "general", 1.5),
    "streamed USA": ("USA", "general", 0.5),
    "running maxima": ("SA", "-I", 400.0),
}


def _numpy_velocity(x, A, V, beta, usa, project):
    """The field at x (n, d) from the whole (n x n) logits matrix, in NumPy."""
    logits = beta * (x @ A) @ x.T
    if usa:
        w = np.exp(logits) / len(x)
    else:
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
    v = w @ x @ V.T
    return v - np.sum(v * x, axis=1, keepdims=True) * x if project else v


def _problem(rng, case, batch=2):
    """Tokens (batch, N, D), A = Q^T K (D, D), V (D, D) and the settings of ``case``."""
    dynamics, kind, beta = CASES[case]
    x = rng.standard_normal((batch, N, D))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    K = rng.standard_normal((D, D)) / np.sqrt(D)
    if kind == "-I":
        A = -np.eye(D)
    else:
        A = K.T @ K if kind == "symmetric" else rng.standard_normal((D, D)) / np.sqrt(D) @ K
        A /= np.linalg.norm(A, ord=2)
    V = rng.standard_normal((D, D)) / np.sqrt(D)
    return x, A, V, beta, dynamics == "USA"


def _field(x, A, V, beta, usa):
    return make_field(A=A, V=V, beta=beta, usa=usa, batch=len(x), n=N, dtype=x.dtype)


def _velocity(field, x, project):
    packed = field.pack(x)
    out = np.empty_like(packed)
    field.velocity(packed, project, out)
    return field.unpack(out, D, True)


@pytest.mark.parametrize("case", CASES)
def test_blocked_velocity_matches_dense_and_numpy(rng, monkeypatch, case):
    monkeypatch.setattr(_dense_field, "_TILE", SMALL_TILE)
    x, A, V, beta, usa = _problem(rng, case)
    field = _field(x, A, V, beta, usa)
    assert field._block is not None
    assert field._pairs == case.startswith("pairs")
    assert field.row_max == (case == "running maxima")
    project = not usa
    got = _velocity(field, x, project)
    # The same field with one logits matrix: blocks from 2^30 tokens on.
    monkeypatch.setattr(_dense_field, "BLOCKED_MIN_N", 2**30)
    dense = _field(x, A, V, beta, usa)
    assert dense._block is None
    # Products and sums in another order: a few hundred ulp of the largest |velocity|
    # (USA's weights reach e^{0.5}, beta 400's logits 400, so ~1e-13 absolute).
    np.testing.assert_allclose(got, _velocity(dense, x, project), rtol=1e-12, atol=1e-12)
    for b in range(len(x)):
        np.testing.assert_allclose(got[b], _numpy_velocity(x[b], A, V, beta, usa, project), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["pairs SA", "streamed USA", "running maxima"])
def test_blocked_float32_matches_numpy_float64(rng, case):
    # float32 rounds BA, the products and the exponentials: each logit is off by about
    # (d + 2) eps (beta + 1), each weight by as much relative, and the velocity, a weighted
    # sum of the V x_j, by twice that times max |V x_j| (times the largest weight for USA;
    # see test_precision.py). The running-maxima case runs at beta 48, shift 96 above the
    # row maxima: past float32's gap of 60.
    x, A, V, beta, usa = _problem(rng, case, batch=1)
    beta = min(beta, 48.0)
    x32 = x.astype(np.float32)
    field = _field(x32, A, V, beta, usa)
    assert field._block is not None and field.row_max == (case == "running maxima")
    got = _velocity(field, x32, True)
    assert got.dtype == np.float32
    x64 = x32[0].astype(np.float64)
    want = _numpy_velocity(x64, A, V, beta, usa, True)
    largest_weight = np.exp(beta) if usa else 1.0
    eps = float(np.finfo(np.float32).eps)
    tol = 2 * (D + 2) * eps * (beta + 1) * np.abs(x64 @ V.T).max() * largest_weight
    assert np.abs(got[0] - want).max() <= tol


@pytest.mark.parametrize("case", ["pairs SA", "running maxima"])
def test_blocked_euler_steps_match_numpy(rng, case):
    # Whole Euler steps x <- (x + h v) / |x + h v| (v unprojected), 2 of them, batch of 2.
    x, A, V, beta, usa = _problem(rng, case)
    h = 0.1 / beta
    field = _field(x, A, V, beta, usa)
    packed = field.pack(x)
    assert field.euler(packed, h, 2) == 2
    want = x.copy()
    for b in range(len(x)):
        for _ in range(2):
            y = want[b] + h * _numpy_velocity(want[b], A, V, beta, usa, False)
            want[b] = y / np.linalg.norm(y, axis=1, keepdims=True)
    np.testing.assert_allclose(field.unpack(packed, D, True), want, rtol=1e-12, atol=1e-12)
