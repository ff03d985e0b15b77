"""Estimators: exact values by dense linear algebra, random ones by convergence (never frozen numbers).

Statistical checks use 4-5 standard errors, which a correct unbiased estimator fails with probability
< 1e-4 per check; seeds are fixed, so a run is deterministic.
"""

import numpy as np
import pytest
import torch

from hessian import (
    MSELoss,
    SelfAttention,
    diagonal,
    frobenius_norm,
    hessian_operator,
    spectral_density,
    top_eigenvalues,
    trace,
)
from hessian.estimators import (
    hutchinson_diagonal,
    hutchinson_squared_frobenius,
    hutchinson_trace,
    hutchpp_trace,
    lanczos,
)


def symmetric(n, seed=0, rank=None):
    rng = np.random.default_rng(seed)
    if rank is None:
        B = rng.standard_normal((n, n))
        return (B + B.T) / 2
    U = rng.standard_normal((n, rank))
    return U @ np.diag(rng.standard_normal(rank) * 3) @ U.T


def test_hutchinson_trace_converges():
    A = symmetric(30)
    exact = np.trace(A)
    ses = []
    for S in (250, 1000, 4000):
        est = hutchinson_trace(A, S, seed=S)
        assert abs(est.value - exact) < 4 * est.stderr
        ses.append(est.stderr)
    # stderr shrinks like 1/sqrt(S): a factor 4 in samples halves it (sample-std noise: 15%)
    np.testing.assert_allclose(np.array(ses[1:]) / ses[:-1], 0.5, rtol=0.15)


def test_hutchpp_exact_on_low_rank_and_unbiased_otherwise():
    low = symmetric(40, rank=5)
    est = hutchpp_trace(low, 30, seed=0)  # sketch of 10 columns covers the rank-5 range
    assert abs(est.value - np.trace(low)) < 1e-9
    A = symmetric(40, seed=1)
    est = hutchpp_trace(A, 60, seed=0)  # sketch of 20 < 40 columns: the Hutchinson part is random
    assert est.stderr > 0 and abs(est.value - np.trace(A)) < 4 * est.stderr
    assert trace(A, method="exact").value == pytest.approx(np.trace(A), abs=1e-10)


def test_frobenius_hutchinson_theory_note_check_15():
    """Theory note §5.15: 50 x 50 symmetric block, S = 10^4."""
    B = symmetric(50, seed=2)
    exact_sq = np.sum(B * B)
    est = hutchinson_squared_frobenius(B, 10_000, seed=0)
    assert abs(est.value - exact_sq) < 4 * est.stderr
    B2 = B @ B
    var_theory = 2 * (np.sum(B2 * B2) - np.sum(np.diag(B2) ** 2))
    var_one_sample = est.stderr**2 * 10_000
    assert abs(var_one_sample / var_theory - 1) < 0.2
    small = hutchinson_squared_frobenius(B, 2_500, seed=1)
    assert est.stderr / small.stderr == pytest.approx(0.5, rel=0.1)


def test_frobenius_norm_hutchinson_on_hessian_block():
    """The growth-experiment use: ||H_QQ||_F of an operator block by Hutchinson vs the exact dense value."""
    layer = SelfAttention(d_model=8, d_k=8, d_v=8)
    params = layer.init(seed=0, std=1.0)
    g = torch.Generator().manual_seed(0)
    X, Y = (
        torch.randn(2, 6, 8, generator=g, dtype=torch.float64),
        torch.randn(2, 6, 8, generator=g, dtype=torch.float64),
    )
    op = hessian_operator(layer, MSELoss(), params, X, Y, ["W_Q"])
    exact = np.linalg.norm(op @ np.eye(64))
    est = frobenius_norm(op, method="hutchinson", num_samples=64, seed=0)
    assert abs(est.value - exact) < 4 * est.stderr
    assert frobenius_norm(op).value == pytest.approx(exact, rel=1e-12)


def test_frobenius_exact_and_auto():
    B = symmetric(20)
    for method in ("exact", "auto"):
        est = frobenius_norm(B, method=method)
        assert est.value == pytest.approx(np.linalg.norm(B), rel=1e-13) and est.stderr == 0
    assert frobenius_norm(B, method="auto", max_exact=10).stderr > 0


def test_diagonal():
    A = symmetric(30, seed=3)
    np.testing.assert_allclose(diagonal(A).value, np.diag(A), atol=1e-14)
    est = hutchinson_diagonal(A, 4000, seed=0)
    assert np.all(np.abs(est.value - np.diag(A)) < 5 * est.stderr)
    # per-entry variance of one sample is sum_{j != i} A_ij^2
    var = np.sum(A * A, axis=1) - np.diag(A) ** 2
    np.testing.assert_allclose(est.stderr**2 * 4000, var, rtol=0.25)


def test_top_eigenvalues():
    A = symmetric(40, seed=4)
    w = np.linalg.eigvalsh(A)
    est = top_eigenvalues(A, k=3)
    np.testing.assert_allclose(est.value, w[::-1][:3], rtol=1e-9, atol=1e-9)
    assert np.all(est.stderr < 1e-6)
    np.testing.assert_allclose(top_eigenvalues(A, k=2, which="SA").value, w[:2], atol=1e-9)
    lm = w[np.argmax(np.abs(w))]
    assert top_eigenvalues(A, which="LM").value[0] == pytest.approx(lm, abs=1e-9)


def test_estimators_on_hessian_operator(tiny_attention):
    layer, loss, params, X, Y = tiny_attention
    op = hessian_operator(layer, loss, params, X, Y)
    H = op @ np.eye(21)
    w = np.linalg.eigvalsh(H)
    assert top_eigenvalues(op).value[0] == pytest.approx(w[-1], abs=1e-10)
    assert trace(op, method="exact").value == pytest.approx(np.trace(H), abs=1e-12)
    assert frobenius_norm(op).value == pytest.approx(np.linalg.norm(H), rel=1e-12)
    np.testing.assert_allclose(diagonal(op).value, np.diag(H), atol=1e-14)
    # 10 Lanczos steps integrate x^2 exactly (degree <= 19), so only probe noise remains
    sd = spectral_density(op, num_probes=30, num_steps=10, seed=0)
    est = sd.expectation(lambda x: x**2)
    assert abs(est.value - np.sum(w**2)) < 4 * est.stderr
    est = hutchpp_trace(op, 15, seed=0)
    assert abs(est.value - np.trace(H)) < 4 * est.stderr + 1e-10


def test_slq_quadrature_and_density():
    A = symmetric(60, seed=5)
    w = np.linalg.eigvalsh(A)
    # Gauss quadrature with m nodes integrates polynomials of degree <= 2m - 1 exactly
    v = np.random.default_rng(0).choice([-1.0, 1.0], size=60)
    alpha, beta = lanczos(lambda V: A @ V, v, 4)
    theta, S = np.linalg.eigh(np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1))
    for k in range(8):
        assert 60 * np.sum(S[0] ** 2 * theta**k) == pytest.approx(v @ np.linalg.matrix_power(A, k) @ v, rel=1e-9)
    # with m = n every eigenvalue is a node
    alpha, beta = lanczos(lambda V: A @ V, v, 60)
    np.testing.assert_allclose(np.linalg.eigvalsh(np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)), w, atol=1e-9)
    sd = spectral_density(A, num_probes=200, num_steps=20, seed=1)
    assert np.trapezoid(sd.density, sd.grid) == pytest.approx(1.0, abs=1e-3)
    assert sd.expectation(np.square).num_matvecs == 200 * 20
    # three distinct eigenvalues: every Krylov space is exhausted after 3 products, so 3 per probe
    three_levels = np.diag(np.repeat([1.0, 2.0, 5.0], [3, 3, 4]))
    exhausted = spectral_density(three_levels, num_probes=4, num_steps=8, seed=0)
    assert exhausted.num_matvecs == exhausted.expectation(np.square).num_matvecs == 4 * 3
    for f, exact in ((lambda x: x**2, np.sum(w**2)), (lambda x: x**3, np.sum(w**3))):
        est = sd.expectation(f)
        assert abs(est.value - exact) < 4 * est.stderr
    # a kernel wide against the node spacing is integrated accurately by 20-node quadrature: the estimate
    # matches the exactly smoothed spectrum up to probe noise (5 stderr) plus a small quadrature bias
    sd = spectral_density(A, num_probes=200, num_steps=20, kernel_width=1.5, seed=1)
    exact_density = np.exp(-0.5 * ((sd.grid[:, None] - w) / 1.5) ** 2).sum(1) / (60 * 1.5 * np.sqrt(2 * np.pi))
    assert np.max(np.abs(sd.density - exact_density)) < 5 * np.max(sd.stderr) + 1e-3


def test_bad_estimator_inputs():
    A = symmetric(10)
    with pytest.raises(ValueError, match="num_steps=11 exceeds the dimension n=10"):
        spectral_density(A, num_steps=11)
    with pytest.raises(ValueError, match="k=10 must be smaller than the dimension n=10"):
        top_eigenvalues(A, k=10)
    with pytest.raises(ValueError, match="Hutch\\+\\+ sketch size"):
        hutchpp_trace(A, 33)
    for call in (
        lambda: trace(A, method="hutchinson", num_samples=11),
        lambda: frobenius_norm(A, method="hutchinson", num_samples=11),
        lambda: diagonal(A, method="hutchinson", num_samples=11),
    ):
        with pytest.raises(ValueError, match="num_samples=11 exceeds the dimension n=10"):
            call()
    with pytest.raises(ValueError, match="num_samples must be an int >= 1"):
        hutchinson_trace(A, 0)
    with pytest.raises(ValueError, match="method must be"):
        trace(A, method="magic")
    with pytest.raises(ValueError, match="square"):
        frobenius_norm(np.zeros((3, 4)))
    with pytest.raises(TypeError, match="LinearOperator"):
        trace([[1.0]])
    with pytest.raises(ValueError, match="which"):
        top_eigenvalues(A, which="XX")
    assert trace(torch.eye(3, dtype=torch.float64), method="exact").value == 3
